//! Rebuilding a store from the log: the topic read again, from its
//! beginning or from a time, into this consumer's store, up to where the
//! topic ended when the rebuild began; then it stops.
//!
//! Why a reader of its own rather than moving the consumer group back: the
//! group's members keep consuming live events meanwhile (Kafka refuses to
//! move an active group's offsets from outside, and stopping every replica
//! first would stop the pipeline), and the rebuild commits nothing, so if it
//! is stopped half way, nothing is lost and it can simply be run again. The
//! store's writes are idempotent by event id, so the events both write are
//! stored once. The records are batched, routed, bounded and written by the
//! same code as the live loop; only where dead letters go differs: a record
//! that cannot be stored was dead-lettered when it was first read, so here
//! it is counted and logged, not dead-lettered twice.

use std::collections::BTreeMap;
use std::fmt;
use std::future::{ready, Future};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use super::batch;
use super::dead_letter::{DeadLetter, DeadLetterError, SendDeadLetters};
use super::stall::Stall;
use super::store::Store;
use super::{ConsumerMetrics, ConsumerSettings, Deadline, Sink};
use crate::offsets::{self, OffsetsError, PartitionEnds, QuietContext};
use crate::reader;
use streamproc_kit::backoff::Backoff;

/// Where a rebuild starts reading, in every partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayFrom {
    /// The oldest record the broker still holds.
    Beginning,
    /// The first record Kafka received at or after this Unix ms (the
    /// records' timestamps: when event-api wrote them).
    Time(i64),
}

/// A start a rebuild cannot read.
#[derive(Debug, thiserror::Error)]
pub enum ReplayFromError {
    #[error("{0:?} is too large for Unix ms")]
    TooLarge(String),
    #[error("{text:?}: not a duration")]
    Duration {
        text: String,
        #[source]
        source: humantime::DurationError,
    },
    #[error("{text:?}: expected beginning, Unix ms, an RFC 3339 time or now-<duration>")]
    Unreadable {
        text: String,
        #[source]
        source: humantime::TimestampError,
    },
}

impl ReplayFrom {
    /// `beginning`, Unix ms, an RFC 3339 time (`2026-12-05T10:00:00Z`), or
    /// `now-<duration>` (`now-6h`, `now-90m`).
    pub fn parse(text: &str) -> Result<Self, ReplayFromError> {
        let now_ms = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        };
        if text == "beginning" {
            Ok(Self::Beginning)
        } else if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            text.parse()
                .map(Self::Time)
                .map_err(|_| ReplayFromError::TooLarge(text.to_owned()))
        } else if let Some(ago) = text.strip_prefix("now-") {
            let ago =
                humantime::parse_duration(ago).map_err(|source| ReplayFromError::Duration {
                    text: text.to_owned(),
                    source,
                })?;
            let ago = i64::try_from(ago.as_millis()).unwrap_or(i64::MAX);
            Ok(Self::Time(now_ms().saturating_sub(ago).max(0)))
        } else {
            humantime::parse_rfc3339_weak(text)
                .map_err(|source| ReplayFromError::Unreadable {
                    text: text.to_owned(),
                    source,
                })
                .map(|at| {
                    let ms = at
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis());
                    Self::Time(i64::try_from(ms).unwrap_or(i64::MAX))
                })
        }
    }
}

/// Why a rebuild could not start.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("cannot create the rebuild's Kafka reader")]
    Reader(#[source] crate::producer::KafkaSetupError),
    #[error("cannot find where the topic ends")]
    Ends(#[source] OffsetsError),
    #[error("cannot find the offsets of {from_ms} ms in the topic")]
    OffsetsForTime {
        from_ms: i64,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("cannot assign the topic's partitions")]
    Assign(#[source] rdkafka::error::KafkaError),
    #[error("the lookup task failed")]
    Task(#[source] tokio::task::JoinError),
    #[error("stopped before the rebuild reached the end it started with")]
    Interrupted,
}

/// What a finished rebuild did.
#[derive(Debug, Clone, PartialEq)]
pub struct RebuildSummary {
    /// Records read, whatever became of them.
    pub records: u64,
    /// Events of this consumer's route written to the store.
    pub written: u64,
    /// Records that could not be stored (not valid events, or refused by
    /// the store); the live consumer dead-lettered them when it read them.
    pub not_stored: u64,
    pub took: Duration,
}

impl RebuildSummary {
    /// Records read per second: the rate comparable with the live
    /// consumer's, which reads every record too.
    pub fn records_per_second(&self) -> f64 {
        self.records as f64 / self.took.as_secs_f64().max(1e-9)
    }
}

impl fmt::Display for RebuildSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rebuilt: {} records read, {} events written, {} not stored, in {:.1} s \
             ({:.0} records/s)",
            self.records,
            self.written,
            self.not_stored,
            self.took.as_secs_f64(),
            self.records_per_second()
        )
    }
}

/// What a rebuild does with a record it cannot store: counts it.
#[derive(Default)]
struct CountOnly {
    records: AtomicUsize,
}

impl SendDeadLetters for CountOnly {
    fn send_all(
        &self,
        letters: &[DeadLetter],
    ) -> impl Future<Output = Result<(), DeadLetterError>> + Send {
        for letter in letters {
            tracing::warn!(
                partition = letter.source.partition,
                offset = letter.source.offset,
                reason = %letter.reason,
                "record not stored by the rebuild (dead-lettered when first read)"
            );
        }
        self.records.fetch_add(letters.len(), Ordering::Relaxed);
        ready(Ok(()))
    }
}

/// How much of the topic a rebuild reads: its records still held and, in
/// each partition, the offset to reach.
struct Span {
    start: TopicPartitionList,
    /// Per partition, the offset after the last record to read.
    end: BTreeMap<i32, i64>,
}

/// Replays the topic into `sink` from `from` up to where each partition ends
/// now, then returns what it did. Stops early (with `Interrupted`) when
/// `shutdown` is cancelled.
pub async fn rebuild<S: Sink>(
    settings: &ConsumerSettings,
    from: ReplayFrom,
    sink: &S,
    metrics: &ConsumerMetrics,
    shutdown: CancellationToken,
) -> Result<RebuildSummary, RebuildError> {
    let started = Instant::now();
    let kafka = Arc::new(
        reader::assigned_reader(
            &settings.brokers,
            &format!("{}-rebuild", settings.group_id),
            settings.fetch_wait_max,
            // As much read ahead as the live consumer keeps, for its pace.
            16_384,
        )
        .map_err(RebuildError::Reader)?,
    );
    let span = {
        let kafka = kafka.clone();
        let topic = settings.topic.clone();
        tokio::task::spawn_blocking(move || span(&kafka, &topic, from))
            .await
            .map_err(RebuildError::Task)??
    };
    kafka.assign(&span.start).map_err(RebuildError::Assign)?;
    let mut left: BTreeMap<i32, i64> = span.end.clone();
    for element in span.start.elements() {
        if let (Offset::Offset(at), Some(end)) =
            (element.offset(), span.end.get(&element.partition()))
        {
            if at >= *end {
                left.remove(&element.partition());
            }
        }
    }
    tracing::info!(
        topic = %settings.topic,
        from = ?from,
        end_offsets = ?span.end,
        "rebuilding the store from the log"
    );

    let dead_letters = CountOnly::default();
    let stall = Stall::new(settings.stall_after);
    let mut retry = Backoff::new(settings.retry_initial, settings.retry_max);
    let mut records: u64 = 0;
    while !left.is_empty() {
        if shutdown.is_cancelled() {
            return Err(RebuildError::Interrupted);
        }
        let batch = batch::gather(&kafka, settings, metrics, &shutdown).await;
        if batch.is_empty() {
            continue;
        }
        let deadline = Deadline::new(&shutdown, settings.drain_timeout);
        let mut store = Store {
            dead_letters: &dead_letters,
            metrics,
            retry: &mut retry,
            deadline: &deadline,
            stall: &stall,
        };
        if !store.batch(&batch, sink).await {
            return Err(RebuildError::Interrupted);
        }
        stall.progressed(metrics);
        records += batch.records() as u64;
        for (partition, next) in batch.next_offsets() {
            if left.get(partition).is_some_and(|end| next >= end) {
                left.remove(partition);
            }
        }
    }
    Ok(RebuildSummary {
        records,
        written: metrics.written.get(),
        not_stored: dead_letters.records.load(Ordering::Relaxed) as u64,
        took: started.elapsed(),
    })
}

/// Where each partition's replay starts and ends. Blocks on the broker.
fn span(
    kafka: &StreamConsumer<QuietContext>,
    topic: &str,
    from: ReplayFrom,
) -> Result<Span, RebuildError> {
    let ends: Vec<PartitionEnds> =
        offsets::topic_ends(kafka, topic, LOOKUP_TIMEOUT).map_err(RebuildError::Ends)?;
    let mut start = TopicPartitionList::new();
    for end in &ends {
        let offset = match from {
            ReplayFrom::Beginning => Offset::Offset(end.low),
            ReplayFrom::Time(ms) => Offset::Offset(ms),
        };
        start
            .add_partition_offset(topic, end.partition, offset)
            .map_err(RebuildError::Assign)?;
    }
    if let ReplayFrom::Time(from_ms) = from {
        start = kafka
            .offsets_for_times(start, LOOKUP_TIMEOUT)
            .map_err(|source| RebuildError::OffsetsForTime { from_ms, source })?;
        // A partition with nothing at or after the time has nothing to
        // replay: Kafka answers its end.
        for end in &ends {
            let at = start
                .find_partition(topic, end.partition)
                .map(|e| e.offset());
            if !matches!(at, Some(Offset::Offset(_))) {
                start
                    .set_partition_offset(topic, end.partition, Offset::Offset(end.high))
                    .map_err(RebuildError::Assign)?;
            }
        }
    }
    Ok(Span {
        start,
        end: ends.iter().map(|e| (e.partition, e.high)).collect(),
    })
}

const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn where_to_start_reads_as_documented() {
        assert_eq!(
            ReplayFrom::parse("beginning").unwrap(),
            ReplayFrom::Beginning
        );
        assert_eq!(
            ReplayFrom::parse("1700000000000").unwrap(),
            ReplayFrom::Time(1_700_000_000_000)
        );
        assert_eq!(
            ReplayFrom::parse("2023-11-14T22:13:20Z").unwrap(),
            ReplayFrom::Time(1_700_000_000_000)
        );
        let Ok(ReplayFrom::Time(ago)) = ReplayFrom::parse("now-1h") else {
            panic!("now-1h");
        };
        let now = streamproc_event::EventTime::now().as_millis();
        assert!((now - 3_600_000 - ago).abs() < 5_000, "{ago}");
        for bad in [
            "",
            "yesterday",
            "now-",
            "now-1y2",
            "-5",
            "99999999999999999999",
        ] {
            assert!(ReplayFrom::parse(bad).is_err(), "{bad:?}");
        }
    }
}
