//! Following the dead-letter topic: every partition from `capacity` records
//! before its end (older ones could not be kept anyway), then each new
//! record as it comes. The topic's partitions are looked up again now and
//! then, since the consumers create the topic with their first dead letter
//! and a cluster may add partitions.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::{Message, Offset, TopicPartitionList};
use streamproc_event::{names, Route};
use streamproc_kafka::offsets::{self, OffsetsError, PartitionEnds, QuietContext};
use streamproc_kit::error::Chain;
use tokio_util::sync::CancellationToken;

use super::kept::{bounded_text, DeadLetter, Kept, Origin, PAYLOAD_KEPT, TEXT_KEPT};
use super::Reading;
use crate::stores::Store;

/// How often the topic's partitions and ends are looked up.
const LOOK_EVERY: Duration = Duration::from_secs(2);
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Tail {
    pub consumer: Arc<StreamConsumer<QuietContext>>,
    pub topic: String,
    pub capacity: usize,
    pub kept: Arc<RwLock<Kept>>,
    pub reading: Arc<RwLock<Reading>>,
}

impl Tail {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut assigned: Vec<i32> = Vec::new();
        let mut look = tokio::time::interval(LOOK_EVERY);
        look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = look.tick() => self.look(&mut assigned).await,
                received = self.consumer.recv(), if !assigned.is_empty() => match received {
                    Ok(message) => self.keep(&message),
                    Err(error) => {
                        tracing::debug!(error = %error, topic = %self.topic, "dead-letter fetch failed");
                        self.set_error(Some(format!("reading {}: {error}", self.topic)));
                    }
                },
            }
        }
    }

    /// Looks up the topic's partitions and ends; assigns new partitions and
    /// notes whether everything up to the ends has been read.
    async fn look(&self, assigned: &mut Vec<i32>) {
        let consumer = self.consumer.clone();
        let topic = self.topic.clone();
        let ends = tokio::task::spawn_blocking(move || {
            offsets::topic_ends(consumer.as_ref(), &topic, METADATA_TIMEOUT)
        })
        .await;
        let ends = match ends {
            Ok(Ok(ends)) => ends,
            // No dead letter yet: the consumers create the topic with the first.
            Ok(Err(OffsetsError::NoTopic(_))) => {
                self.set_caught_up(Vec::new());
                return;
            }
            Ok(Err(error)) => {
                self.set_error(Some(Chain(&error).to_string()));
                return;
            }
            Err(error) => {
                self.set_error(Some(format!("the dead-letter lookup failed: {error}")));
                return;
            }
        };
        let partitions: Vec<i32> = ends.iter().map(|e| e.partition).collect();
        if partitions != *assigned {
            match self.assign(&ends) {
                Ok(()) => *assigned = partitions,
                Err(error) => {
                    self.set_error(Some(format!("assigning {}: {error}", self.topic)));
                    return;
                }
            }
        }
        self.set_caught_up(ends);
    }

    /// Reads every partition from `capacity` records before its end.
    fn assign(&self, ends: &[PartitionEnds]) -> Result<(), rdkafka::error::KafkaError> {
        let mut list = TopicPartitionList::new();
        let capacity = i64::try_from(self.capacity).unwrap_or(i64::MAX);
        for end in ends {
            let from = end.high.saturating_sub(capacity).max(end.low);
            list.add_partition_offset(&self.topic, end.partition, Offset::Offset(from))?;
        }
        self.consumer.assign(&list)?;
        tracing::info!(
            topic = %self.topic,
            partitions = ends.len(),
            "reading the dead letters"
        );
        Ok(())
    }

    fn keep(&self, message: &BorrowedMessage<'_>) {
        let letter = letter_of(message);
        {
            let mut reading = self.reading.write().unwrap_or_else(|e| e.into_inner());
            let next = reading.read_to.entry(letter.partition).or_insert(0);
            *next = (*next).max(letter.offset + 1);
            reading.error = None;
        }
        self.kept
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .add(letter);
    }

    fn set_error(&self, error: Option<String>) {
        self.reading
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .error = error;
    }

    fn set_caught_up(&self, ends: Vec<PartitionEnds>) {
        let mut reading = self.reading.write().unwrap_or_else(|e| e.into_inner());
        reading.error = None;
        reading.ends = Some(ends);
    }
}

/// A record of the dead-letter topic as the API shows it: text bounded,
/// headers read where present.
fn letter_of(message: &BorrowedMessage<'_>) -> DeadLetter {
    let mut reason = None;
    let mut refused_by = None;
    let (mut topic, mut partition, mut offset) = (None, None, None);
    if let Some(headers) = message.headers() {
        for header in headers.iter() {
            let value = header
                .value
                .map(|v| String::from_utf8_lossy(v).into_owned());
            match header.key {
                "streamproc-reason" => reason = value,
                names::REFUSED_ROUTE_HEADER => {
                    refused_by = value.as_deref().and_then(Route::from_name).map(Store::of)
                }
                "streamproc-source-topic" => topic = value,
                "streamproc-source-partition" => partition = value.and_then(|v| v.parse().ok()),
                "streamproc-source-offset" => offset = value.and_then(|v| v.parse().ok()),
                _ => {}
            }
        }
    }
    let source = match (topic, partition, offset) {
        (Some(topic), Some(partition), Some(offset)) => Some(Origin {
            topic: bounded_text(topic.as_bytes(), TEXT_KEPT).0,
            partition,
            offset,
        }),
        _ => None,
    };
    let payload = message.payload();
    let (preview, truncated) = match payload {
        Some(bytes) => {
            let (text, cut) = bounded_text(bytes, PAYLOAD_KEPT);
            (Some(text), cut)
        }
        None => (None, false),
    };
    DeadLetter {
        time: message.timestamp().to_millis().unwrap_or(0),
        partition: message.partition(),
        offset: message.offset(),
        key: message.key().map(|k| bounded_text(k, TEXT_KEPT).0),
        reason: reason.map_or_else(
            || "(no reason header)".to_owned(),
            |r| bounded_text(r.as_bytes(), TEXT_KEPT).0,
        ),
        refused_by,
        source,
        payload: preview,
        payload_bytes: payload.map_or(0, <[u8]>::len),
        truncated,
    }
}
