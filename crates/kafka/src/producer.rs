//! Kafka client setup shared by the services. Only standard Kafka protocol
//! features are used, so the same code runs against tansu locally and
//! Apache Kafka in a cluster.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;
use streamproc_event::LogPosition;
use tokio_util::sync::CancellationToken;

use crate::config::ProducerArgs;

#[derive(Debug, thiserror::Error)]
pub enum KafkaSetupError {
    #[error("cannot create a Kafka client for {brokers}")]
    Client { brokers: String, source: KafkaError },
    #[error("cannot create topic {topic:?}")]
    CreateTopic { topic: String, source: KafkaError },
    #[error("the broker refused to create topic {topic:?}: {code}")]
    TopicRefused {
        topic: String,
        code: RDKafkaErrorCode,
    },
    #[error("Kafka did not answer within {timeout:?}")]
    Unreachable {
        timeout: Duration,
        source: KafkaError,
    },
    #[error("topic {0:?} does not exist yet")]
    NoTopic(String),
    #[error("the metadata request did not finish")]
    Interrupted(#[source] tokio::task::JoinError),
}

pub(crate) fn base_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        // Brokers advertised as "localhost" may resolve to ::1 first; prefer
        // IPv4 so a broker that listens on 127.0.0.1 is found at once.
        .set("broker.address.family", "v4");
    config
}

/// Whether librdkafka currently reaches any broker. librdkafka reports "all
/// brokers down" at once through its error callback; nothing reports the way
/// back up, so [`BrokerState::watch`] asks the cluster until it answers.
#[derive(Clone, Default)]
pub struct BrokerState {
    down: Arc<AtomicBool>,
}

impl BrokerState {
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    /// While the brokers are marked down, asks the cluster for metadata every
    /// half second and marks them up once it answers. Runs until `stop`.
    pub async fn watch(self, producer: ReliableProducer, topic: String, stop: CancellationToken) {
        const EVERY: Duration = Duration::from_millis(500);
        while !stop.is_cancelled() {
            if self.is_down() && check_reachable(&producer, &topic, EVERY).await.is_ok() {
                self.down.store(false, Ordering::Relaxed);
                tracing::info!("kafka brokers reachable again");
            }
            tokio::select! {
                () = stop.cancelled() => {}
                () = tokio::time::sleep(EVERY) => {}
            }
        }
    }
}

/// Client context that logs librdkafka's errors through `tracing` and keeps
/// [`BrokerState`] current.
pub struct ObservedContext {
    brokers: BrokerState,
}

impl ClientContext for ObservedContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if let KafkaError::Global(RDKafkaErrorCode::AllBrokersDown) = error {
            if !self.brokers.down.swap(true, Ordering::Relaxed) {
                tracing::warn!(reason, "kafka brokers all down");
            }
            return;
        }
        tracing::warn!(error = %error, reason, "kafka client error");
    }
}

pub type ReliableProducer = FutureProducer<ObservedContext>;

/// A producer that never acknowledges an event Kafka could lose: acks=all,
/// and librdkafka retries a failed send until `delivery_timeout` (retries
/// included) has passed, then reports it failed. With
/// [`ProducerArgs::kafka_idempotence`] the broker also drops the duplicates
/// those retries may write.
pub fn producer(
    brokers: &str,
    delivery_timeout: Duration,
    settings: ProducerArgs,
) -> Result<(ReliableProducer, BrokerState), KafkaSetupError> {
    let state = BrokerState::default();
    let context = ObservedContext {
        brokers: state.clone(),
    };
    let producer = base_config(brokers)
        .set("enable.idempotence", settings.kafka_idempotence.to_string())
        .set("acks", "all")
        // librdkafka's default, written out because the guarantee rests on
        // it: retry until message.timeout.ms rather than give up earlier.
        .set("retries", i32::MAX.to_string())
        .set(
            "message.timeout.ms",
            delivery_timeout.as_millis().to_string(),
        )
        .set("linger.ms", "5")
        .create_with_context(context)
        .map_err(|source| KafkaSetupError::Client {
            brokers: brokers.to_owned(),
            source,
        })?;
    Ok((producer, state))
}

/// Why a batch of records was not all acknowledged. Some may have been
/// written anyway: callers retry, and ids keep the copies harmless.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// librdkafka's local queue is full: Kafka is slower than the intake.
    #[error("the producer queue is full")]
    QueueFull,
    #[error("{failed} of {total} records were not acknowledged")]
    NotAcknowledged {
        failed: usize,
        total: usize,
        /// Why the last one failed.
        #[source]
        last: KafkaError,
    },
}

/// Queues every record, then waits for all of Kafka's acknowledgements:
/// the one way both event-api and the dead-letter writer produce, so that
/// neither acknowledges what Kafka could still lose. Answers where each
/// record was stored, in the order given.
pub async fn send_all<'a, C: ClientContext + 'static>(
    producer: &FutureProducer<C>,
    records: impl ExactSizeIterator<Item = FutureRecord<'a, [u8], [u8]>>,
) -> Result<Vec<LogPosition>, SendError> {
    let total = records.len();
    let mut deliveries = Vec::with_capacity(total);
    for record in records {
        match producer.send_result(record) {
            Ok(delivery) => deliveries.push(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                return Err(SendError::QueueFull)
            }
            Err((last, _)) => {
                return Err(SendError::NotAcknowledged {
                    failed: total - deliveries.len(),
                    total,
                    last,
                })
            }
        }
    }
    let mut failed = 0;
    let mut last = None;
    let mut positions = Vec::with_capacity(total);
    for delivery in deliveries {
        // librdkafka fails every record after message.timeout.ms (the
        // delivery timeout), so each of these awaits ends by then.
        match delivery.await {
            Ok(Ok(delivery)) => positions.push(LogPosition {
                partition: delivery.partition,
                offset: delivery.offset,
            }),
            Ok(Err((error, _))) => {
                failed += 1;
                last = Some(error);
            }
            Err(_cancelled) => {
                failed += 1;
                last = Some(KafkaError::Canceled);
            }
        }
    }
    match last {
        None => Ok(positions),
        Some(last) => Err(SendError::NotAcknowledged {
            failed,
            total,
            last,
        }),
    }
}

/// Creates `topic` unless it exists already. Brokers may not auto-create
/// topics (tansu with SQLite storage does not), so services that write make
/// sure the topic is there.
pub async fn ensure_topic(
    brokers: &str,
    topic: &str,
    partitions: i32,
    replication: i32,
    timeout: Duration,
) -> Result<(), KafkaSetupError> {
    let admin: AdminClient<DefaultClientContext> =
        base_config(brokers)
            .create()
            .map_err(|source| KafkaSetupError::Client {
                brokers: brokers.to_owned(),
                source,
            })?;
    let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication));
    let options = AdminOptions::new()
        .request_timeout(Some(timeout))
        .operation_timeout(Some(timeout));
    let results = admin
        .create_topics([&new_topic], &options)
        .await
        .map_err(|source| KafkaSetupError::CreateTopic {
            topic: topic.to_owned(),
            source,
        })?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => {
                return Err(KafkaSetupError::TopicRefused {
                    topic: topic.to_owned(),
                    code,
                })
            }
        }
    }
    Ok(())
}

/// Asks the cluster for the topic's metadata: the readiness check of every
/// service that talks to Kafka.
pub async fn check_reachable<C: ClientContext + 'static>(
    producer: &FutureProducer<C>,
    topic: &str,
    timeout: Duration,
) -> Result<(), KafkaSetupError> {
    let producer = producer.clone();
    let topic = topic.to_owned();
    let topic_name = topic.clone();
    // fetch_metadata blocks its thread until the broker answers.
    let answer = tokio::task::spawn_blocking(move || {
        producer
            .client()
            .fetch_metadata(Some(&topic), timeout)
            .map(|metadata| {
                metadata
                    .topics()
                    .iter()
                    .any(|t| t.name() == topic && t.error().is_none())
            })
    })
    .await;
    match answer {
        Ok(Ok(true)) => Ok(()),
        Ok(Ok(false)) => Err(KafkaSetupError::NoTopic(topic_name)),
        Ok(Err(source)) => Err(KafkaSetupError::Unreachable { timeout, source }),
        Err(join) => Err(KafkaSetupError::Interrupted(join)),
    }
}
