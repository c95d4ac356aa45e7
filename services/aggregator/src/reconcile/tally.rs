//! The arithmetic of a reconciliation: per bucket and in total, each
//! store's accepted events against what it holds and what it refused, and
//! the one line that says how it stands. No I/O here: the counts come in,
//! the answer goes out.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use utoipa::ToSchema;

use crate::dead_letters::RefusedEvent;
use crate::stores::Store;
use streamproc_grid::Grid;

/// One store's side of a bucket, or of the whole range.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct Tally {
    /// Accepted events whose amount routes them to this store, from the
    /// ledger consumer-high keeps.
    pub accepted: u64,
    /// Events the store holds: TimescaleDB's rows counted one by one,
    /// InfluxDB's per-second totals.
    pub stored: u64,
    /// Events the store refused, dead-lettered and not stored since.
    pub dead_lettered: u64,
    /// accepted − stored − dead_lettered. Above 0: events not accounted
    /// for (yet, while in flight); below 0: more held than accepted.
    pub difference: i64,
}

impl Tally {
    fn settle(&mut self) {
        let held = i128::from(self.stored) + i128::from(self.dead_lettered);
        self.difference = i64::try_from(i128::from(self.accepted) - held).unwrap_or(i64::MIN);
    }

    fn add(&mut self, other: &Self) {
        self.accepted += other.accepted;
        self.stored += other.stored;
        self.dead_lettered += other.dead_lettered;
        self.settle();
    }
}

/// One bucket of the range, both stores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct BucketTally {
    /// The bucket's start, Unix ms.
    pub time: i64,
    pub timescaledb: Tally,
    pub influxdb: Tally,
}

impl BucketTally {
    fn side(&mut self, store: Store) -> &mut Tally {
        match store {
            Store::TimescaleDb => &mut self.timescaledb,
            Store::InfluxDb => &mut self.influxdb,
        }
    }
}

/// What was read, per bucket start (Unix ms).
#[derive(Debug, Default)]
pub struct Counts {
    /// The ledger: (high route, low route).
    pub accepted: Vec<(i64, u64, u64)>,
    pub timescaledb: Vec<(i64, u64)>,
    pub influxdb: Vec<(i64, u64)>,
    /// Refused events not stored since.
    pub refused: Vec<RefusedEvent>,
}

/// Every bucket of `grid` that holds anything, oldest first, and the
/// totals of each store.
pub fn tally(grid: &Grid, counts: &Counts) -> (Vec<BucketTally>, [Tally; 2]) {
    let mut buckets: BTreeMap<i64, BucketTally> = BTreeMap::new();
    fn at(buckets: &mut BTreeMap<i64, BucketTally>, time: i64) -> &mut BucketTally {
        buckets.entry(time).or_insert_with(|| BucketTally {
            time,
            timescaledb: Tally::default(),
            influxdb: Tally::default(),
        })
    }
    for &(time, high, low) in &counts.accepted {
        let bucket = at(&mut buckets, time);
        bucket.timescaledb.accepted += high;
        bucket.influxdb.accepted += low;
    }
    for &(time, stored) in &counts.timescaledb {
        at(&mut buckets, time).timescaledb.stored += stored;
    }
    for &(time, stored) in &counts.influxdb {
        at(&mut buckets, time).influxdb.stored += stored;
    }
    for refused in &counts.refused {
        let offset = refused.time.as_millis() - grid.start_ms();
        let start = grid.start_ms() + offset.div_euclid(grid.step_ms()) * grid.step_ms();
        at(&mut buckets, start).side(refused.store).dead_lettered += 1;
    }
    let mut totals = [Tally::default(); 2];
    let buckets: Vec<BucketTally> = buckets
        .into_values()
        .map(|mut bucket| {
            bucket.timescaledb.settle();
            bucket.influxdb.settle();
            totals[0].add(&bucket.timescaledb);
            totals[1].add(&bucket.influxdb);
            bucket
        })
        .collect();
    (buckets, totals)
}

/// How the range stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every accepted event is stored or dead-lettered, exactly once.
    Accounted,
    /// Events are still on their way (a consumer is behind, records came
    /// in while counting, totals are being refreshed): a difference now is
    /// not yet a loss. Ask again.
    InFlight,
    /// Nothing is on its way, and the counts differ: the buckets say where.
    Unaccounted,
}

/// Most buckets one summary names per store.
const NAMED_BUCKETS: usize = 3;

/// The verdict and its line, from the tallies and, when something is
/// still on its way, why.
pub fn verdict(
    buckets: &[BucketTally],
    totals: &[Tally; 2],
    in_flight: Option<&str>,
) -> (Verdict, String) {
    let accepted = totals[0].accepted + totals[1].accepted;
    let even = buckets
        .iter()
        .all(|b| b.timescaledb.difference == 0 && b.influxdb.difference == 0);
    match in_flight {
        None if even => (
            Verdict::Accounted,
            format!("all {accepted} events accounted for"),
        ),
        Some(why) => {
            let open: u64 = totals.iter().map(|t| t.difference.unsigned_abs()).sum();
            (
                Verdict::InFlight,
                format!("{accepted} events accepted, {open} still in flight: {why}"),
            )
        }
        None => {
            let parts: Vec<String> = [Store::TimescaleDb, Store::InfluxDb]
                .into_iter()
                .flat_map(|store| uneven(buckets, store))
                .collect();
            (Verdict::Unaccounted, parts.join("; "))
        }
    }
}

/// What is missing from `store`, and what it holds beyond the accepted,
/// with the first buckets where.
fn uneven(buckets: &[BucketTally], store: Store) -> Vec<String> {
    let side = |b: &BucketTally| match store {
        Store::TimescaleDb => b.timescaledb,
        Store::InfluxDb => b.influxdb,
    };
    let mut lines = Vec::new();
    for (missing, words) in [(true, "missing from"), (false, "more than accepted in")] {
        let at: Vec<(i64, u64)> = buckets
            .iter()
            .map(|b| (b.time, side(b).difference))
            .filter(|&(_, d)| d != 0 && (d > 0) == missing)
            .map(|(time, d)| (time, d.unsigned_abs()))
            .collect();
        if at.is_empty() {
            continue;
        }
        let events: u64 = at.iter().map(|&(_, n)| n).sum();
        let mut named: Vec<String> = at
            .iter()
            .take(NAMED_BUCKETS)
            .map(|&(time, n)| format!("{n} at {}", rfc3339(time)))
            .collect();
        if at.len() > NAMED_BUCKETS {
            named.push(format!("and in {} more buckets", at.len() - NAMED_BUCKETS));
        }
        let noun = if events == 1 { "event" } else { "events" };
        lines.push(format!(
            "{events} {noun} {words} {} ({})",
            store.name(),
            named.join(", ")
        ));
    }
    lines
}

fn rfc3339(ms: i64) -> String {
    let time = SystemTime::UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(time).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamproc_event::{EventId, EventTime};

    fn grid() -> Grid {
        Grid::covering(1_000_000, 1_010_000, 1_000).unwrap()
    }

    fn refused(store: Store, time: i64) -> RefusedEvent {
        RefusedEvent {
            store,
            id: EventId::parse(&format!("r-{time}")).unwrap(),
            time: EventTime::from_millis(time).unwrap(),
        }
    }

    #[test]
    fn every_event_stored_or_refused_is_accounted_for() {
        let counts = Counts {
            accepted: vec![(1_000_000, 3, 2), (1_002_000, 1, 0)],
            timescaledb: vec![(1_000_000, 2), (1_002_000, 1)],
            influxdb: vec![(1_000_000, 2)],
            refused: vec![refused(Store::TimescaleDb, 1_000_999)],
        };
        let (buckets, totals) = tally(&grid(), &counts);
        assert_eq!(buckets.len(), 2);
        assert_eq!(buckets[0].timescaledb.dead_lettered, 1);
        assert_eq!(totals[0].accepted, 4);
        assert_eq!(totals[0].difference, 0);
        let (status, line) = verdict(&buckets, &totals, None);
        assert_eq!(status, Verdict::Accounted);
        assert_eq!(line, "all 6 events accounted for");
    }

    #[test]
    fn a_missing_row_is_named_with_its_store_and_bucket() {
        let counts = Counts {
            accepted: vec![(1_000_000, 3, 0), (1_005_000, 2, 1)],
            timescaledb: vec![(1_000_000, 3), (1_005_000, 1)],
            influxdb: vec![(1_005_000, 2)],
            refused: Vec::new(),
        };
        let (buckets, totals) = tally(&grid(), &counts);
        assert_eq!(buckets[1].timescaledb.difference, 1);
        assert_eq!(buckets[1].influxdb.difference, -1);
        let (status, line) = verdict(&buckets, &totals, None);
        assert_eq!(status, Verdict::Unaccounted);
        assert_eq!(
            line,
            "1 event missing from timescaledb (1 at 1970-01-01T00:16:45.000Z); \
             1 event more than accepted in influxdb (1 at 1970-01-01T00:16:45.000Z)"
        );
        let (status, line) = verdict(&buckets, &totals, Some("consumer-low is 4 behind"));
        assert_eq!(status, Verdict::InFlight);
        assert_eq!(
            line,
            "6 events accepted, 2 still in flight: consumer-low is 4 behind"
        );
    }

    #[test]
    fn a_summary_names_the_first_buckets_only() {
        let counts = Counts {
            accepted: (0..5).map(|i| (1_000_000 + i * 1_000, 1, 0)).collect(),
            ..Counts::default()
        };
        let (buckets, totals) = tally(&grid(), &counts);
        let (_, line) = verdict(&buckets, &totals, None);
        assert!(
            line.starts_with("5 events missing from timescaledb (1 at "),
            "{line}"
        );
        assert!(line.ends_with(", and in 2 more buckets)"), "{line}");
    }
}
