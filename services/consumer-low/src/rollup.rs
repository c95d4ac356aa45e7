//! Per-second totals of the stored events, in the measurement `event_1s`, so
//! that the aggregator reads one point per second instead of every event.
//! (InfluxDB 1.x takes seconds to group a million events in an hour into
//! one-second buckets across the 1024 shard series; a rollup hour is 3 600
//! points.)
//!
//! Totals are recomputed from the stored events, never incremented, so a
//! redelivered event cannot count twice. Each second's point carries two
//! numbers besides its totals: `dirty`, a random nonce that every write of
//! events in that second replaces, and `clean`, the nonce the totals were
//! computed under. The writer marks a second dirty only after its events
//! are stored, and the maintainer reads the marks before the events, so any
//! write the totals missed has left a newer mark: `dirty <> clean` until the
//! next refresh. Marks are written before the batch's offsets are committed,
//! so a crash leaves the seconds dirty in InfluxDB, where the next start
//! finds them. Several instances may refresh the same second: each refresh
//! is from the events themselves, and a stale one leaves the mark unequal.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use streamproc::influx::{rows, Influx, InfluxError, MEASUREMENT, ROLLUP_MEASUREMENT};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Seconds further apart than this are refreshed by separate queries, so a
/// batch of scattered old events does not scan the days between them.
const MAX_GAP_SECONDS: i64 = 60;
/// Longest span one refresh query covers, so recovering a long dirty stretch
/// is many bounded queries rather than one huge one.
const MAX_RUN_SECONDS: i64 = 600;
/// Runs up to this long are totalled by consumer-low from the amounts
/// themselves (see `Rollups::totals`).
const SUMMED_HERE_SECONDS: i64 = 5;
/// How often, and how far back, a running instance looks for seconds that
/// others left dirty.
const RESCAN_INTERVAL: Duration = Duration::from_secs(60);
const RESCAN_LOOKBACK: Duration = Duration::from_secs(86_400);

pub struct Rollups {
    influx: Influx,
    /// Seconds this instance marked dirty and has not refreshed since, each
    /// with the sequence number of its latest mark.
    pending: Mutex<BTreeMap<i64, u64>>,
    sequence: AtomicU64,
    /// Pending seconds whose refresh InfluxDB refused, logged once each.
    refused: Mutex<BTreeSet<i64>>,
    /// Wakes the maintainer as soon as seconds are marked, so new totals are
    /// visible one refresh after their events are stored.
    marked: Notify,
}

impl Rollups {
    pub fn new(influx: Influx) -> Self {
        Self {
            influx,
            pending: Mutex::new(BTreeMap::new()),
            sequence: AtomicU64::new(0),
            refused: Mutex::new(BTreeSet::new()),
            marked: Notify::new(),
        }
    }

    /// Marks `seconds` dirty in InfluxDB. Call after their events are
    /// stored; on error, write the events again and retry.
    pub async fn mark(&self, seconds: &BTreeSet<i64>) -> Result<(), InfluxError> {
        let nonce = rand::random::<u64>() >> 1 | 1;
        let mut lines = String::with_capacity(seconds.len() * 48);
        for second in seconds {
            let _ = writeln!(
                lines,
                "{ROLLUP_MEASUREMENT} dirty={nonce}i,clean=0i {}",
                second * 1_000_000_000
            );
        }
        self.influx.write(lines).await?;
        self.add_pending(seconds.iter().copied());
        self.marked.notify_one();
        Ok(())
    }

    /// Notes `seconds` for the next refresh, under a new sequence number.
    fn add_pending(&self, seconds: impl Iterator<Item = i64>) {
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed);
        let mut pending = self.pending.lock().expect("not poisoned");
        pending.extend(seconds.map(|second| (second, sequence)));
    }

    /// Refreshes every second this instance marked. A second whose totals
    /// InfluxDB refuses to compute (a sum of stored amounts that overflows,
    /// say) stays pending and is retried, but never holds back the others:
    /// a refused run is refreshed again one second at a time. An outage
    /// ends the round; everything left is retried on the next.
    pub async fn refresh(&self) -> Result<(), InfluxError> {
        let snapshot: Vec<(i64, u64)> = {
            let pending = self.pending.lock().expect("not poisoned");
            pending.iter().map(|(s, q)| (*s, *q)).collect()
        };
        let mut refused = BTreeSet::new();
        for (first, last) in runs(snapshot.iter().map(|(second, _)| *second)) {
            match self.refresh_range(first, last + 1).await {
                Ok(()) => {}
                Err(InfluxError::Rejected { .. }) if first < last => {
                    let seconds = snapshot.iter().map(|(s, _)| *s);
                    for second in seconds.filter(|s| (first..=last).contains(s)) {
                        match self.refresh_range(second, second + 1).await {
                            Ok(()) => {}
                            Err(error @ InfluxError::Rejected { .. }) => {
                                self.note_refused(second, &error);
                                refused.insert(second);
                            }
                            Err(error) => return Err(error),
                        }
                    }
                }
                Err(error @ InfluxError::Rejected { .. }) => {
                    self.note_refused(first, &error);
                    refused.insert(first);
                }
                Err(error) => return Err(error),
            }
        }
        let mut pending = self.pending.lock().expect("not poisoned");
        let mut failing = self.refused.lock().expect("not poisoned");
        for (second, sequence) in snapshot {
            if refused.contains(&second) {
                continue;
            }
            failing.remove(&second);
            // A second marked again meanwhile stays pending.
            if pending.get(&second) == Some(&sequence) {
                pending.remove(&second);
            }
        }
        Ok(())
    }

    /// Logs a second whose totals InfluxDB refuses, once until it recovers.
    fn note_refused(&self, second: i64, error: &InfluxError) {
        if self.refused.lock().expect("not poisoned").insert(second) {
            tracing::error!(
                "InfluxDB refuses the totals of second {second} ({error}); \
                 retrying it without holding back the other seconds"
            );
        }
    }

    /// Seconds whose totals InfluxDB currently refuses to compute.
    pub fn refused_seconds(&self) -> usize {
        self.refused.lock().expect("not poisoned").len()
    }

    /// Seconds left dirty in InfluxDB by any instance, for example by one
    /// that crashed between storing events and refreshing their totals;
    /// within `lookback` of now, or all of them.
    pub async fn recover(&self, lookback: Option<Duration>) -> Result<usize, InfluxError> {
        let since = lookback.map_or(String::new(), |d| {
            format!(" AND time > now() - {}s", d.as_secs())
        });
        let answer = self
            .influx
            .query(&format!(
                "SELECT dirty FROM {ROLLUP_MEASUREMENT} WHERE dirty <> clean{since}"
            ))
            .await?;
        let seconds: Vec<i64> = rows(&answer)
            .filter_map(|row| row.first()?.as_i64())
            .map(|ms| ms.div_euclid(1000))
            .collect();
        self.add_pending(seconds.iter().copied());
        Ok(seconds.len())
    }

    /// Totals for events stored before consumer-low kept them (an upgraded
    /// installation): when no second has totals yet but events exist,
    /// InfluxDB computes them itself (`SELECT … INTO`), a day at a time.
    pub async fn backfill(&self) -> Result<(), InfluxError> {
        let totalled = self
            .influx
            .query(&format!("SELECT count(count) FROM {ROLLUP_MEASUREMENT}"))
            .await?;
        if rows(&totalled).any(|row| row.get(1).and_then(|n| n.as_f64()) > Some(0.0)) {
            return Ok(());
        }
        let time_of = |answer: serde_json::Value| rows(&answer).next()?.first()?.as_i64();
        let first = self
            .influx
            .query(&format!("SELECT first(amount) FROM {MEASUREMENT}"))
            .await?;
        let last = self
            .influx
            .query(&format!("SELECT last(amount) FROM {MEASUREMENT}"))
            .await?;
        let (Some(first), Some(last)) = (time_of(first), time_of(last)) else {
            return Ok(());
        };
        tracing::info!("computing the per-second totals of the events stored so far");
        const DAY_MS: i64 = 86_400_000;
        let mut day = first.div_euclid(DAY_MS) * DAY_MS;
        while day <= last {
            self.influx
                .query(&format!(
                    "SELECT count(amount) AS count, sum(amount) AS sum, min(amount) AS min, \
                     max(amount) AS max INTO {ROLLUP_MEASUREMENT} FROM {MEASUREMENT} \
                     WHERE time >= {day}ms AND time < {}ms GROUP BY time(1s) fill(none)",
                    day + DAY_MS
                ))
                .await?;
            day += DAY_MS;
        }
        Ok(())
    }

    /// Recomputes the totals of the dirty seconds in `from..to` (Unix
    /// seconds) from the stored events.
    async fn refresh_range(&self, from: i64, to: i64) -> Result<(), InfluxError> {
        let range = format!("time >= {from}s AND time < {to}s");
        // Marks first: see the module comment.
        let marks = self
            .influx
            .query(&format!(
                "SELECT dirty FROM {ROLLUP_MEASUREMENT} WHERE {range} AND dirty <> clean"
            ))
            .await?;
        let marks: Vec<(i64, i64)> = rows(&marks)
            .filter_map(|row| Some((row.first()?.as_i64()?, row.get(1)?.as_i64()?)))
            .collect();
        if marks.is_empty() {
            return Ok(());
        }
        let totals = self.totals(from, to).await?;
        let mut lines = String::new();
        for (ms, nonce) in marks {
            let total = totals.get(&ms).copied().unwrap_or_default();
            let _ = write!(
                lines,
                "{ROLLUP_MEASUREMENT} count={}i,sum={}",
                total.count, total.sum
            );
            if let (Some(min), Some(max)) = (total.min, total.max) {
                let _ = write!(lines, ",min={min},max={max}");
            }
            let _ = writeln!(lines, ",clean={nonce}i {}", ms * 1_000_000);
        }
        self.influx.write(lines).await
    }

    /// The totals of each second in `from..to` (Unix seconds) that holds
    /// events, by the second's start in ms. A short run is totalled here
    /// from its amounts: InfluxDB 1.x opens a cursor per shard series and
    /// per aggregate, so asking it for four aggregates of one second costs
    /// about four times reading the amounts, and this refresh is on the
    /// path of every event to the chart. Longer runs (catching up) are
    /// totalled by InfluxDB, so a refresh never reads a backlog's points.
    async fn totals(&self, from: i64, to: i64) -> Result<BTreeMap<i64, Total>, InfluxError> {
        let range = format!("time >= {from}s AND time < {to}s");
        let mut totals: BTreeMap<i64, Total> = BTreeMap::new();
        if to - from <= SUMMED_HERE_SECONDS {
            let answer = self
                .influx
                .query(&format!("SELECT amount FROM {MEASUREMENT} WHERE {range}"))
                .await?;
            for row in rows(&answer) {
                if let (Some(ms), Some(amount)) = (
                    row.first().and_then(|t| t.as_i64()),
                    row.get(1).and_then(|a| a.as_f64()),
                ) {
                    totals
                        .entry(ms.div_euclid(1000) * 1000)
                        .or_default()
                        .add(amount);
                }
            }
        } else {
            let answer = self
                .influx
                .query(&format!(
                    "SELECT count(amount), sum(amount), min(amount), max(amount) \
                     FROM {MEASUREMENT} WHERE {range} GROUP BY time(1s) fill(none)"
                ))
                .await?;
            for row in rows(&answer) {
                let number = |i: usize| row.get(i).and_then(|n| n.as_f64());
                if let Some(ms) = row.first().and_then(|t| t.as_i64()) {
                    totals.insert(
                        ms,
                        Total {
                            count: number(1).unwrap_or(0.0) as u64,
                            sum: number(2).unwrap_or(0.0),
                            min: number(3),
                            max: number(4),
                        },
                    );
                }
            }
        }
        Ok(totals)
    }

    /// Refreshes as soon as seconds are marked (marks that arrive during a
    /// refresh are taken together by the next), and every `interval` to
    /// retry what failed, until `stop`, then once more. Looks for seconds
    /// other instances left dirty: all of them at start (after a backfill if
    /// needed), then those of the last day every `RESCAN_INTERVAL` (a full
    /// scan reads one point per second of history).
    pub async fn maintain(&self, interval: Duration, stop: CancellationToken) {
        let mut last_scan: Option<Instant> = None;
        loop {
            let stopping = tokio::select! {
                () = stop.cancelled() => true,
                () = self.marked.notified() => false,
                () = tokio::time::sleep(interval) => false,
            };
            if last_scan.is_none_or(|at| at.elapsed() >= RESCAN_INTERVAL) {
                let lookback = last_scan.map(|_| RESCAN_LOOKBACK);
                let scan = async {
                    if last_scan.is_none() {
                        self.backfill().await?;
                    }
                    self.recover(lookback).await
                };
                match scan.await {
                    Ok(found) => {
                        if found > 0 {
                            tracing::info!("refreshing the totals of {found} seconds left dirty");
                        }
                        last_scan = Some(Instant::now());
                    }
                    Err(e) => tracing::warn!("looking for dirty seconds failed: {e}"),
                }
            }
            if let Err(e) = self.refresh().await {
                tracing::warn!("refreshing per-second totals failed (will retry): {e}");
            }
            if stopping {
                return;
            }
        }
    }
}

/// One second's totals.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Total {
    count: u64,
    sum: f64,
    min: Option<f64>,
    max: Option<f64>,
}

impl Total {
    fn add(&mut self, amount: f64) {
        self.count += 1;
        self.sum += amount;
        self.min = Some(self.min.map_or(amount, |m| m.min(amount)));
        self.max = Some(self.max.map_or(amount, |m| m.max(amount)));
    }
}

/// Sorted seconds as `(first, last)` runs, split where they are more than
/// `MAX_GAP_SECONDS` apart or a run would span more than `MAX_RUN_SECONDS`.
fn runs(seconds: impl Iterator<Item = i64>) -> Vec<(i64, i64)> {
    let mut runs: Vec<(i64, i64)> = Vec::new();
    for second in seconds {
        match runs.last_mut() {
            Some((first, last))
                if second - *last <= MAX_GAP_SECONDS && second - *first < MAX_RUN_SECONDS =>
            {
                *last = second
            }
            _ => runs.push((second, second)),
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_seconds_share_a_query_and_distant_ones_do_not() {
        let seconds = [10, 11, 70, 200, 201, 10_000];
        assert_eq!(
            runs(seconds.into_iter()),
            [(10, 70), (200, 201), (10_000, 10_000)]
        );
        let long = (0..1500).step_by(50);
        assert_eq!(runs(long), [(0, 550), (600, 1150), (1200, 1450)]);
    }
}
