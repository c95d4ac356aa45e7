//! Where a topic ends and where a consumer group stands on it, read from
//! Kafka itself: the watermarks of every partition (ListOffsets) and the
//! group's committed offsets (OffsetFetch). Both are plain Kafka protocol,
//! answered the same by tansu and Apache Kafka, and both describe the whole
//! group however many replicas of a service share it.
//!
//! Used by a consumer to notice that nobody consumes (`consume::stranded`)
//! and by the aggregator to report every group's lag. Deliberately not
//! DescribeGroups / the admin API: tansu 0.6.0 answers that with a body
//! librdkafka cannot parse.
//!
//! Every call here blocks its thread until the broker answers or the
//! timeout passes; call them from `spawn_blocking`.

use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use crate::producer::{base_config, KafkaSetupError};

#[derive(Debug, thiserror::Error)]
pub enum OffsetsError {
    #[error("no metadata for topic {topic:?}: {source}")]
    Metadata { topic: String, source: KafkaError },
    #[error("topic {0:?} does not exist")]
    NoTopic(String),
    #[error("no watermarks for partition {partition} of {topic:?}: {source}")]
    Watermarks {
        topic: String,
        partition: i32,
        source: KafkaError,
    },
    #[error("no committed offsets: {0}")]
    Committed(KafkaError),
}

/// One partition's watermarks: `low` is its oldest offset still held,
/// `high` the offset its next record will get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionEnds {
    pub partition: i32,
    pub low: i64,
    pub high: i64,
}

/// Where a group stands on one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupPosition {
    pub partition: i32,
    /// What the group committed; `None` when it never did.
    pub committed: Option<i64>,
    /// Where the group will read next: its committed offset, else the oldest
    /// record (the consumers reset to `earliest`).
    pub position: i64,
    /// Records after `position`.
    pub lag: i64,
}

/// Keeps librdkafka's connection errors and logs at debug level: a reader
/// that probes every second would otherwise log each failed connection
/// while the broker is down, and the caller reports the failure itself.
#[derive(Default)]
pub struct QuietContext;

impl ClientContext for QuietContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        tracing::debug!(level = ?level, facility = fac, message = log_message, "librdkafka");
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(error = %error, reason, "librdkafka error");
    }
}

impl ConsumerContext for QuietContext {}

/// A client that reads `group`'s committed offsets and never joins the
/// group: it does not subscribe and commits nothing, so it cannot take
/// partitions from the group's members.
pub fn group_reader(
    brokers: &str,
    group: &str,
) -> Result<BaseConsumer<QuietContext>, KafkaSetupError> {
    base_config(brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create_with_context(QuietContext)
        .map_err(|source| KafkaSetupError::Client {
            brokers: brokers.to_owned(),
            source,
        })
}

/// The watermarks of every partition of `topic`, by partition.
pub fn topic_ends<C: ConsumerContext, K: Consumer<C>>(
    kafka: &K,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<PartitionEnds>, OffsetsError> {
    let metadata = kafka
        .fetch_metadata(Some(topic), timeout)
        .map_err(|source| OffsetsError::Metadata {
            topic: topic.to_owned(),
            source,
        })?;
    let mut partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(OffsetsError::NoTopic(topic.to_owned()));
    }
    partitions.sort_unstable();
    partitions
        .into_iter()
        .map(|partition| {
            let (low, high) =
                kafka
                    .fetch_watermarks(topic, partition, timeout)
                    .map_err(|source| OffsetsError::Watermarks {
                        topic: topic.to_owned(),
                        partition,
                        source,
                    })?;
            Ok(PartitionEnds {
                partition,
                low,
                high,
            })
        })
        .collect()
}

/// Where the group of `kafka` (its `group.id`) stands on each partition of
/// `ends`.
pub fn group_positions<C: ConsumerContext, K: Consumer<C>>(
    kafka: &K,
    topic: &str,
    ends: &[PartitionEnds],
    timeout: Duration,
) -> Result<Vec<GroupPosition>, OffsetsError> {
    let failed = OffsetsError::Committed;
    let mut wanted = TopicPartitionList::new();
    for end in ends {
        wanted
            .add_partition_offset(topic, end.partition, Offset::Invalid)
            .map_err(failed)?;
    }
    let committed = kafka.committed_offsets(wanted, timeout).map_err(failed)?;
    Ok(ends
        .iter()
        .map(|end| {
            let committed = committed
                .find_partition(topic, end.partition)
                .and_then(|element| match element.offset() {
                    Offset::Offset(n) => Some(n),
                    _ => None,
                });
            position(*end, committed)
        })
        .collect())
}

fn position(end: PartitionEnds, committed: Option<i64>) -> GroupPosition {
    let position = committed.unwrap_or(end.low);
    GroupPosition {
        partition: end.partition,
        committed,
        position,
        lag: (end.high - position).max(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_that_never_committed_starts_at_the_oldest_record() {
        let end = PartitionEnds {
            partition: 2,
            low: 5,
            high: 12,
        };
        assert_eq!(position(end, None).lag, 7);
        assert_eq!(position(end, Some(10)).lag, 2);
        // A committed offset past the end (the topic was recreated) is no
        // negative lag.
        assert_eq!(position(end, Some(20)).lag, 0);
    }
}
