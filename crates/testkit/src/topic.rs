use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

/// A canonical event record as event-api writes it: keyed by id.
pub fn event_record(id: &str, time_ms: i64, amount: f64) -> (String, Vec<u8>) {
    let payload = format!(r#"{{"id":"{id}","time":{time_ms},"amount":{amount:?}}}"#);
    (id.to_owned(), payload.into_bytes())
}

/// Writes `(key, payload)` records to `topic` and waits for every
/// acknowledgement.
pub async fn produce(brokers: &str, topic: &str, records: &[(String, Vec<u8>)]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("broker.address.family", "v4")
        .set("linger.ms", "5")
        .create()
        .expect("cannot create the test producer");
    let mut deliveries = Vec::with_capacity(records.len());
    for (key, payload) in records {
        let record = FutureRecord::to(topic)
            .key(key.as_str())
            .payload(payload.as_slice());
        deliveries.push(
            producer
                .send_result(record)
                .map_err(|(e, _)| e)
                .expect("the test producer's queue takes the record"),
        );
    }
    for delivery in deliveries {
        delivery
            .await
            .expect("delivery answered")
            .map_err(|(e, _)| e)
            .expect("Kafka acknowledged the record");
    }
}

/// One record as an independent consumer sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub payload: String,
    pub headers: Vec<(String, String)>,
}

impl Record {
    /// Why a dead letter was dead-lettered (its `streamproc-reason`
    /// header); empty when the header is missing.
    pub fn reason(&self) -> &str {
        self.headers
            .iter()
            .find(|(key, _)| key == "streamproc-reason")
            .map_or("", |(_, value)| value.as_str())
    }
}

/// Reads `topic` from the beginning of every partition, without a consumer
/// group, until `expected` records arrived and then `settle` more time
/// passed with none (so extra records would be seen), or `timeout` ran out.
///
/// End offsets are not used to decide when to stop: watermark queries are
/// not reliable on every broker.
pub async fn read_topic(
    brokers: &str,
    topic: &str,
    expected: usize,
    timeout: Duration,
    settle: Duration,
) -> Vec<Record> {
    let brokers = brokers.to_owned();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || read_blocking(&brokers, &topic, expected, timeout, settle))
        .await
        .expect("reader thread panicked")
}

fn read_blocking(
    brokers: &str,
    topic: &str,
    expected: usize,
    timeout: Duration,
    settle: Duration,
) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "testkit-reader")
        .set("enable.auto.commit", "false")
        .set("broker.address.family", "v4")
        .create()
        .expect("cannot create the test consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("cannot fetch topic metadata");
    let partitions = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().len())
        .unwrap_or(0);
    assert!(partitions > 0, "topic {topic} has no partitions");
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment
            .add_partition_offset(topic, partition as i32, Offset::Beginning)
            .expect("valid partition");
    }
    consumer
        .assign(&assignment)
        .expect("cannot assign partitions");

    let deadline = Instant::now() + timeout;
    let mut settled_at: Option<Instant> = None;
    let mut records = Vec::new();
    while Instant::now() < deadline {
        if records.len() >= expected {
            let since = *settled_at.get_or_insert_with(Instant::now);
            if since.elapsed() >= settle {
                break;
            }
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                settled_at = None;
                records.push(Record {
                    partition: message.partition(),
                    offset: message.offset(),
                    key: message
                        .key()
                        .map(|k| String::from_utf8_lossy(k).into_owned()),
                    payload: String::from_utf8_lossy(message.payload().unwrap_or_default())
                        .into_owned(),
                    headers: message
                        .headers()
                        .map(|headers| {
                            headers
                                .iter()
                                .map(|h| {
                                    let value =
                                        String::from_utf8_lossy(h.value.unwrap_or_default());
                                    (h.key.to_owned(), value.into_owned())
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                });
            }
            Some(Err(e)) => eprintln!("test consumer: {e}"),
            None => {}
        }
    }
    records
}
