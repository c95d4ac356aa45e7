//! The dead-letter topic: records that are not valid events go there, with
//! the reason and their origin in headers, so they never block a partition
//! and are never silently dropped.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;

use crate::config::ProducerArgs;
use crate::producer::{self, ReliableProducer};
use streamproc_event::{names, LogPosition, Route};

#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub source_topic: String,
    /// Where the record was in the source topic.
    pub source: LogPosition,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub reason: String,
    /// The route whose store refused the event; `None` for a record that
    /// was not a valid event. Sent as the header `streamproc-refused-route`,
    /// so that the aggregator's reconciliation counts the event against the
    /// store that refused it.
    pub refused_by: Option<Route>,
}

/// Why dead letters were not all acknowledged; the batch is then retried.
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    #[error("cannot create the dead-letter topic")]
    Topic(#[source] producer::KafkaSetupError),
    #[error("Kafka did not acknowledge the dead letters")]
    Send(#[source] producer::SendError),
}

/// Where a batch's dead letters go: [`DeadLetters`], the dead-letter topic.
/// A trait only so that the store's unit tests can put a recorder in its
/// place and test the loop's logic without a broker.
pub trait SendDeadLetters: Sync {
    /// Writes every dead letter and waits for their acknowledgements.
    fn send_all(
        &self,
        letters: &[DeadLetter],
    ) -> impl Future<Output = Result<(), DeadLetterError>> + Send;
}

impl SendDeadLetters for DeadLetters {
    fn send_all(
        &self,
        letters: &[DeadLetter],
    ) -> impl Future<Output = Result<(), DeadLetterError>> + Send {
        DeadLetters::send_all(self, letters)
    }
}

pub struct DeadLetters {
    brokers: String,
    topic: String,
    producer: ReliableProducer,
    topic_exists: AtomicBool,
}

const TIMEOUT: Duration = Duration::from_secs(10);

impl DeadLetters {
    pub fn new(brokers: &str, topic: &str, settings: ProducerArgs) -> anyhow::Result<Self> {
        let (producer, _) = producer::producer(brokers, TIMEOUT, settings)?;
        Ok(Self {
            brokers: brokers.to_owned(),
            topic: topic.to_owned(),
            producer,
            topic_exists: AtomicBool::new(false),
        })
    }

    /// Asks the cluster for `topic`'s metadata.
    pub async fn check_reachable(&self, topic: &str) -> Result<(), producer::KafkaSetupError> {
        producer::check_reachable(&self.producer, topic, Duration::from_secs(2)).await
    }

    /// Writes every dead letter and waits for Kafka's acknowledgements.
    pub async fn send_all(&self, letters: &[DeadLetter]) -> Result<(), DeadLetterError> {
        if letters.is_empty() {
            return Ok(());
        }
        if !self.topic_exists.load(Ordering::Relaxed) {
            producer::ensure_topic(&self.brokers, &self.topic, 1, 1, TIMEOUT)
                .await
                .map_err(DeadLetterError::Topic)?;
            self.topic_exists.store(true, Ordering::Relaxed);
        }
        let records = letters.iter().map(|letter| self.record(letter));
        producer::send_all(&self.producer, records)
            .await
            .map(drop)
            .map_err(DeadLetterError::Send)
    }

    /// A dead letter's record: its key and payload as they came, the reason
    /// and the origin in headers.
    fn record<'a>(&'a self, letter: &'a DeadLetter) -> FutureRecord<'a, [u8], [u8]> {
        let partition = letter.source.partition.to_string();
        let offset = letter.source.offset.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "streamproc-reason",
                value: Some(&letter.reason),
            })
            .insert(Header {
                key: "streamproc-source-topic",
                value: Some(&letter.source_topic),
            })
            .insert(Header {
                key: "streamproc-source-partition",
                value: Some(&partition),
            })
            .insert(Header {
                key: "streamproc-source-offset",
                value: Some(&offset),
            });
        let headers = match letter.refused_by {
            Some(route) => headers.insert(Header {
                key: names::REFUSED_ROUTE_HEADER,
                value: Some(route.as_str()),
            }),
            None => headers,
        };
        let mut record = FutureRecord::to(&self.topic).headers(headers);
        if let Some(key) = &letter.key {
            record = record.key(key.as_slice());
        }
        if let Some(payload) = &letter.payload {
            record = record.payload(payload.as_slice());
        }
        record
    }
}
