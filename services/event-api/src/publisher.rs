//! Writes validated events to Kafka and reports success only once Kafka has
//! acknowledged every one of them.

use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureRecord, Producer};
use rdkafka::util::Timeout;
use streamproc_event::Event;
use streamproc_event::LogPosition;
use streamproc_kafka::producer::{self, BrokerState, ReliableProducer, SendError};
use streamproc_kit::error::Chain;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// librdkafka reports every broker down: answer at once rather than
    /// queue records that can only time out. That keeps a request during an
    /// outage from holding its share of `MAX_IN_FLIGHT_EVENTS` for the whole
    /// delivery timeout, and it never hands tansu 0.6.0 the timed-out
    /// idempotent record that stops it accepting produce requests (when
    /// KAFKA_IDEMPOTENCE is on against it).
    #[error("no Kafka broker is reachable")]
    Unreachable,
    /// librdkafka's local queue is full: Kafka is slower than the intake.
    #[error("the producer queue is full")]
    QueueFull,
    #[error("{failed} of {total} events were not acknowledged")]
    NotAcknowledged {
        failed: usize,
        total: usize,
        /// Why the last one failed.
        source: KafkaError,
    },
}

pub struct Publisher {
    producer: ReliableProducer,
    brokers: BrokerState,
    topic: String,
    delivery_timeout: Duration,
}

impl Publisher {
    pub fn new(
        producer: ReliableProducer,
        brokers: BrokerState,
        topic: String,
        delivery_timeout: Duration,
    ) -> Self {
        Self {
            producer,
            brokers,
            topic,
            delivery_timeout,
        }
    }

    pub fn producer(&self) -> &ReliableProducer {
        &self.producer
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Sends one record per event, keyed by the event id so that a retried
    /// event lands on the same partition as its first copy, and waits for all
    /// acknowledgements. Returns how long Kafka took and where it stored
    /// each event, in the order given.
    ///
    /// On error some events may have been written anyway; the client retries
    /// with the same ids and the consumers store each id once.
    pub async fn publish(
        &self,
        events: &[Event],
    ) -> Result<(Duration, Vec<LogPosition>), PublishError> {
        if self.brokers.is_down() {
            return Err(PublishError::Unreachable);
        }
        let started = Instant::now();
        let payloads: Vec<Vec<u8>> = events.iter().map(Event::to_json_bytes).collect();
        let records = events.iter().zip(&payloads).map(|(event, payload)| {
            FutureRecord::to(&self.topic)
                .key(event.id.as_str().as_bytes())
                .payload(payload.as_slice())
        });
        match producer::send_all(&self.producer, records).await {
            Ok(positions) => Ok((started.elapsed(), positions)),
            Err(SendError::QueueFull) => Err(PublishError::QueueFull),
            Err(SendError::NotAcknowledged {
                failed,
                total,
                last,
            }) => Err(PublishError::NotAcknowledged {
                failed,
                total,
                source: last,
            }),
        }
    }

    /// Waits until everything queued has been delivered or has failed.
    pub async fn flush(&self) {
        let producer = self.producer.clone();
        let timeout = self.delivery_timeout;
        let flushed =
            tokio::task::spawn_blocking(move || producer.flush(Timeout::After(timeout))).await;
        match flushed {
            Ok(Ok(())) => tracing::info!("producer flushed"),
            Ok(Err(e)) => tracing::warn!(error = %Chain(&e), "producer flush incomplete"),
            Err(e) => tracing::warn!(error = %Chain(&e), "producer flush task failed"),
        }
    }
}
