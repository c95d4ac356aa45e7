//! The dead letters, as `/api/v1/dead-letters` lists them and
//! `/api/v1/events/{id}` finds them: one task follows the dead-letter topic
//! and keeps the newest DEAD_LETTERS_KEPT in memory.
//!
//! Why in memory rather than read from Kafka per request: Kafka finds a
//! record by offset, not by key, so finding an event's dead letter would
//! mean reading the whole topic each time; and a page "newest first" over
//! several partitions is a merge that a kept, ordered set answers in
//! microseconds. Every replica of the aggregator reads the same topic, so
//! each answers the same, and a cursor from one is good at another.

mod kept;
mod tail;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use streamproc_kafka::offsets::PartitionEnds;
use streamproc_kafka::producer::KafkaSetupError;
use streamproc_kafka::reader;
use tokio_util::sync::CancellationToken;

pub use kept::{DeadLetter, Order, RefusedEvent};

use kept::Kept;
use tail::Tail;

/// How far the reading has come, for the answers to say whether they are
/// complete.
#[derive(Debug, Default)]
struct Reading {
    /// Per partition, the offset after the last record read.
    read_to: BTreeMap<i32, i64>,
    /// The topic's partitions at the last look; `Some(empty)` when the
    /// topic does not exist yet (no dead letter was ever written).
    ends: Option<Vec<PartitionEnds>>,
    /// Why the last look or read failed.
    error: Option<String>,
}

impl Reading {
    /// The offset after the last record read in `end`'s partition; its
    /// oldest offset when none was read there.
    fn read_to(&self, end: &PartitionEnds) -> i64 {
        self.read_to
            .get(&end.partition)
            .copied()
            .unwrap_or(end.low)
            .max(end.low)
    }
}

/// Whether the kept letters are all there are, as of the last look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completeness {
    /// Every record up to the topic's end at the last look (every
    /// LOOK_EVERY, 2 s) has been read.
    pub caught_up: bool,
    /// Records the topic holds, all partitions together.
    pub in_topic: i64,
    /// Why the topic could not be read, when it could not.
    pub error: Option<String>,
}

#[derive(Clone)]
pub struct DeadLetters {
    kept: Arc<RwLock<Kept>>,
    reading: Arc<RwLock<Reading>>,
}

impl DeadLetters {
    /// Starts following `topic` until `shutdown`. The client connects on
    /// first use, so this succeeds while the broker is down.
    pub fn start(
        brokers: &str,
        topic: &str,
        capacity: usize,
        shutdown: CancellationToken,
    ) -> Result<Self, KafkaSetupError> {
        // A megabyte read ahead: dead letters come a few at a time.
        let consumer = reader::assigned_reader(
            brokers,
            "streamproc-aggregator-dead-letters",
            FETCH_WAIT,
            1024,
        )?;
        let letters = Self {
            kept: Arc::new(RwLock::new(Kept::new(capacity))),
            reading: Arc::default(),
        };
        let tail = Tail {
            consumer: Arc::new(consumer),
            topic: topic.to_owned(),
            capacity,
            kept: letters.kept.clone(),
            reading: letters.reading.clone(),
        };
        tokio::spawn(tail.run(shutdown));
        Ok(letters)
    }

    /// Up to `limit` letters older than `before`, newest first, and whether
    /// older ones are kept.
    pub fn page(&self, before: Option<Order>, limit: usize) -> (Vec<DeadLetter>, bool) {
        self.kept().page(before, limit)
    }

    pub fn at(&self, partition: i32, offset: i64) -> Option<DeadLetter> {
        self.kept().at(partition, offset)
    }

    /// The kept letters of the record keyed `key` (an event id), newest first.
    pub fn with_key(&self, key: &str) -> Vec<DeadLetter> {
        self.kept().with_key(key)
    }

    /// The events a store refused, with times in `start..end` (Unix ms),
    /// among the kept letters.
    pub fn refused(&self, start: i64, end: i64) -> Vec<RefusedEvent> {
        self.kept().refused(start, end)
    }

    /// Whether every one of the topic's first `records` (the sum of its
    /// partitions' end offsets, as Kafka gave it just now) has been read.
    pub fn has_read(&self, records: i64) -> bool {
        let reading = self.reading.read().unwrap_or_else(|e| e.into_inner());
        let Some(ends) = &reading.ends else {
            return false;
        };
        ends.iter().map(|end| reading.read_to(end)).sum::<i64>() >= records
    }

    /// Whether every letter the topic holds is kept (none was dropped for
    /// room, DEAD_LETTERS_KEPT).
    pub fn keeps_all(&self) -> bool {
        self.completeness().in_topic <= self.kept().capacity() as i64
    }

    pub fn kept_count(&self) -> usize {
        self.kept().len()
    }

    pub fn completeness(&self) -> Completeness {
        let reading = self.reading.read().unwrap_or_else(|e| e.into_inner());
        let (caught_up, in_topic) = match &reading.ends {
            None => (false, 0),
            Some(ends) => (
                ends.iter().all(|end| reading.read_to(end) >= end.high),
                ends.iter().map(|end| end.high - end.low).sum(),
            ),
        };
        Completeness {
            caught_up,
            in_topic,
            error: reading.error.clone(),
        }
    }

    fn kept(&self) -> std::sync::RwLockReadGuard<'_, Kept> {
        self.kept.read().unwrap_or_else(|e| e.into_inner())
    }
}

/// How long the broker may hold a fetch when no dead letter comes: short,
/// because tansu holds every fetch this long, and a dead letter should
/// show within a second of being written.
const FETCH_WAIT: Duration = Duration::from_millis(100);
