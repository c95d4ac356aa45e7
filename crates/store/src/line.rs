//! How an event becomes an InfluxDB point.
//!
//! InfluxDB identifies a point by measurement, tag set and timestamp only:
//! a second point with the same three replaces the first. So the point's
//! identity must come from the event id, not from the time alone:
//!
//! - timestamp: the event time in milliseconds plus a sub-millisecond offset
//!   (0–999 999 ns) taken from a hash of the id;
//! - tag `shard`: 0–1023, from the same hash.
//!
//! Beside `amount` and `id`, each point keeps the Kafka record it came from
//! (`kafka_partition`, `kafka_offset`) and when consumer-low wrote it
//! (`stored_at`, Unix ms), the same names as TimescaleDB's columns, so the
//! aggregator can trace an event from either store back to the log.
//!
//! A redelivered or retried event has the same id, hence the same point, and
//! overwrites itself. Two different events share a point only if they fall
//! in the same millisecond and their ids' hashes agree in both parts: one
//! chance in about a billion (1024 × 10⁶) per such pair. At a steady R
//! events/s that is R² / 2.048·10¹² overwritten points per second: none to
//! speak of at the default 1/s, about 15 a year at 1 000/s, about 4 a day at
//! 10 000/s (see the README). 1024 series keep InfluxDB's index small, where
//! a tag per id would make a series per event. Time buckets of a millisecond
//! or more are unaffected by the offset.

use std::fmt::Write;

use crate::influx::MEASUREMENT;
use streamproc_event::{EventId, EventTime, LoggedEvent};
use xxhash_rust::xxh3::xxh3_64;

pub const SHARDS: u64 = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PointIdentity {
    pub shard: u64,
    pub time_ns: i128,
}

/// Where the event with this id and time is stored. xxh3 is fixed by its
/// specification, so the identity of a stored event never changes across
/// releases.
pub fn point_identity(id: &EventId, time: EventTime) -> PointIdentity {
    let hash = xxh3_64(id.as_str().as_bytes());
    PointIdentity {
        shard: (hash >> 32) % SHARDS,
        time_ns: i128::from(time.as_millis()) * 1_000_000 + i128::from(hash % 1_000_000),
    }
}

/// `event,shard=N amount=<float>,id="<id>",kafka_partition=<p>i,kafka_offset=<o>i,stored_at=<ms>i <ns>`
/// per event, one per line.
pub fn encode(events: &[LoggedEvent], stored_at_ms: i64) -> String {
    let mut body = String::with_capacity(events.len() * 160);
    for LoggedEvent { event, position } in events {
        let point = point_identity(&event.id, event.time);
        // Display prints a finite f64 without an exponent; line protocol
        // reads a number without an `i` suffix as a float.
        let _ = writeln!(
            body,
            "{MEASUREMENT},shard={} amount={},id=\"{}\",kafka_partition={}i,kafka_offset={}i,stored_at={stored_at_ms}i {}",
            point.shard,
            event.amount.value(),
            escape_string_field(event.id.as_str()),
            position.partition,
            position.offset,
            point.time_ns
        );
    }
    body
}

fn escape_string_field(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamproc_event::{Amount, Event, LogPosition};

    fn id(id: &str) -> EventId {
        EventId::parse(id).unwrap()
    }

    fn ms(ms: i64) -> EventTime {
        EventTime::from_millis(ms).unwrap()
    }

    #[test]
    fn same_id_same_point_and_the_offset_stays_within_the_millisecond() {
        let a = point_identity(&id("a"), ms(1_000));
        assert_eq!(a, point_identity(&id("a"), ms(1_000)));
        assert!(a.time_ns >= 1_000_000_000 && a.time_ns < 1_001_000_000);
        assert!(a.shard < SHARDS);
    }

    #[test]
    fn different_ids_in_one_millisecond_get_different_points() {
        // A thousand events in one millisecond: far above StreamProc's rates.
        let points: std::collections::HashSet<_> = (0..1_000)
            .map(|i| point_identity(&id(&format!("run-{i}")), ms(5)))
            .collect();
        assert_eq!(points.len(), 1_000);
    }

    #[test]
    fn encodes_floats_escapes_ids_and_keeps_the_record_and_write_time() {
        let logged = LoggedEvent {
            event: Event::new(id("q\"\\"), ms(1), Amount::new(5.0).unwrap()),
            position: LogPosition {
                partition: 2,
                offset: 41,
            },
        };
        let line = encode(&[logged], 1_700_000_000_123);
        assert!(line.starts_with("event,shard="), "{line}");
        assert!(
            line.contains(
                " amount=5,id=\"q\\\"\\\\\",kafka_partition=2i,kafka_offset=41i,\
                 stored_at=1700000000123i "
            ),
            "{line}"
        );
        assert!(line.ends_with('\n'));
    }
}
