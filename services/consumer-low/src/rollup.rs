//! Totals of the stored events at two levels, so that readers never scan
//! the events themselves: per second in the measurement `event_1s` (the
//! aggregator's series read one point per second instead of every event;
//! InfluxDB 1.x takes seconds to group a million events in an hour into
//! one-second buckets across the 1024 shard series), and per hour in
//! `event_1h`, computed from the seconds (the aggregator's totals read one
//! point per hour of history instead of one per second).
//!
//! Totals are recomputed from the level below, never incremented, so a
//! redelivered event cannot count twice. Each bucket's point carries two
//! numbers besides its totals: `dirty`, a random nonce that every change
//! below the bucket replaces, and `clean`, the nonce the totals were
//! computed under. A bucket is marked dirty only after what it is computed
//! from has changed, and the maintainer reads the marks before that source,
//! so any change the totals missed has left a newer mark: `dirty <> clean`
//! until the next refresh. Several instances may refresh the same bucket:
//! each refresh is from the source itself, and a stale one leaves the mark
//! unequal.
//!
//! - Seconds are marked by the writer once their events are stored, and
//!   computed from the events.
//! - Hours are marked by the writer once it has marked the seconds (so
//!   that a crash anywhere after the events are stored leaves the hour
//!   dirty), and again by the maintainer after it has written seconds'
//!   totals; they are computed from the seconds' totals. An hour is written
//!   clean only if none of its seconds is dirty at that moment, since a
//!   dirty second's totals are about to change and the maintainer that
//!   changes them could crash before marking the hour again. Otherwise its
//!   totals are written as they stand (so the aggregator's totals keep up
//!   under steady load) and the hour stays dirty.
//!
//! Marks are written before the batch's offsets are committed, so a crash
//! leaves the buckets dirty in InfluxDB, where the next start finds them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::metrics::histogram::Histogram;
use serde_json::Value;
use streamproc_event::EventTime;
use streamproc_kafka::consume::visible::Visible;
use streamproc_kit::error::Chain;
use streamproc_kit::metrics::{latency_histogram, Registry};
use streamproc_store::influx::{
    rows, statement, Influx, InfluxError, MEASUREMENT, ROLLUP_MEASUREMENT,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Per-hour totals of `event_1s` (fields `count`, `sum`, `min`, `max`), read
/// by the aggregator's totals (services/aggregator/src/stores/influx.rs
/// names it too).
pub const HOUR_MEASUREMENT: &str = streamproc_event::names::EVENT_PER_HOUR_MEASUREMENT;

/// One level of totals.
struct Level {
    /// Where its totals are written.
    measurement: &'static str,
    /// Seconds per bucket. Buckets are aligned to the epoch and named by
    /// their index: Unix seconds, Unix hours.
    width: i64,
    /// Dirty buckets further apart than this (in buckets) are refreshed by
    /// separate queries, so scattered old events do not make a query read
    /// everything between them.
    max_gap: i64,
    /// Most buckets one refresh query covers, so recovering a long dirty
    /// stretch is many bounded queries rather than one huge one.
    max_run: i64,
    /// For logs.
    name: &'static str,
}

const SECONDS: Level = Level {
    measurement: ROLLUP_MEASUREMENT,
    width: 1,
    max_gap: 60,
    max_run: 600,
    name: "second",
};

/// An hour reads up to 3 600 second points, so only neighbouring hours
/// share a query, and a query reads at most a day of seconds.
const HOURS: Level = Level {
    measurement: HOUR_MEASUREMENT,
    width: 3600,
    max_gap: 1,
    max_run: 24,
    name: "hour",
};

/// Amounts read per query when seconds are totalled (see
/// `Rollups::event_totals`): at most the row limit some InfluxDB servers
/// still set (`max-row-limit`, 10 000 before 1.2.2; an answer cut by it is
/// partial, which is an error). A full page is about 200 kB of JSON.
const AMOUNTS_PAGE: usize = 10_000;
/// Seconds whose events are this old are late already: when every pending
/// second is, a refresh round waits until `LATE_SPACING` after the last one
/// began, so that a backlog's seconds are totalled in fewer, larger
/// queries. Each query costs InfluxDB about 60 ms of CPU before it reads a
/// point (a cursor for each of the 1 024 shard series), so refreshing after
/// every batch of a backlog spent most of InfluxDB's query time on that.
const LATE: Duration = Duration::from_secs(5);
const LATE_SPACING: Duration = Duration::from_secs(1);
/// How often, and how far back, a running instance looks for buckets that
/// others left dirty.
const RESCAN_INTERVAL: Duration = Duration::from_secs(60);
const RESCAN_LOOKBACK: Duration = Duration::from_secs(86_400);
/// Dirty buckets read per recovery query, below InfluxDB's row limit
/// (`max-row-limit`, often 10 000).
const RECOVER_PAGE: usize = 5_000;

/// What one instance knows about a level.
struct LevelState {
    level: &'static Level,
    /// Buckets this instance marked (or found) dirty and has not refreshed
    /// since, each with the sequence number of its latest mark.
    pending: Mutex<BTreeMap<i64, u64>>,
    /// Pending buckets whose refresh InfluxDB refused, logged once each.
    refused: Mutex<BTreeSet<i64>>,
}

impl LevelState {
    fn new(level: &'static Level) -> Self {
        Self {
            level,
            pending: Mutex::new(BTreeMap::new()),
            refused: Mutex::new(BTreeSet::new()),
        }
    }
}

/// A bucket's totals and marks as read for one refresh.
struct Reading {
    /// Start (Unix ms) and `dirty` nonce of each dirty bucket.
    marks: Vec<(i64, i64)>,
    /// Totals by bucket start (Unix ms).
    totals: BTreeMap<i64, Total>,
    /// Buckets whose source is itself dirty: written, but not clean.
    unsettled: BTreeSet<i64>,
}

pub struct Rollups {
    influx: Influx,
    sequence: AtomicU64,
    seconds: LevelState,
    hours: LevelState,
    /// Counts the writers' marks, so that hour work can give way to seconds
    /// newly marked (see `maintain`).
    marks: AtomicU64,
    /// Wakes the maintainer as soon as seconds are marked, so new totals are
    /// visible one refresh after their events are stored.
    marked: Notify,
    /// Time of each refresh of pending seconds: the last step before a new
    /// event is counted by the aggregator.
    seconds_refresh: Histogram,
    /// Told after each refresh of seconds: their new events now count.
    visible: Visible,
}

impl Rollups {
    pub fn new(influx: Influx, visible: Visible) -> Self {
        Self {
            influx,
            sequence: AtomicU64::new(0),
            seconds: LevelState::new(&SECONDS),
            hours: LevelState::new(&HOURS),
            marks: AtomicU64::new(0),
            marked: Notify::new(),
            seconds_refresh: latency_histogram(),
            visible,
        }
    }

    /// Adds `rollup_refresh_seconds` to consumer-low's metrics.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "rollup_refresh_seconds",
            "Time of one refresh of the per-second totals of newly written seconds",
            self.seconds_refresh.clone(),
        );
    }

    /// Marks `seconds`, then their hours, dirty in InfluxDB. Call after
    /// their events are stored; on error, write the events again and retry.
    /// The maintainer is woken once the seconds are marked, so their
    /// refresh does not wait for the hours' marks.
    pub async fn mark(&self, seconds: &BTreeSet<i64>) -> Result<(), InfluxError> {
        self.write_marks(&SECONDS, seconds).await?;
        self.add_pending(&self.seconds, seconds.iter().copied());
        self.marks.fetch_add(1, Ordering::Relaxed);
        self.marked.notify_one();
        // This mark keeps the hours dirty in InfluxDB should the seconds'
        // refresh never come (see the module comment). It may land after
        // that refresh has marked and refreshed the hours, so they are
        // pending again: otherwise they would stay dirty (with right
        // totals) until a rescan.
        let hours = hours_of(seconds.iter().copied());
        self.write_marks(&HOURS, &hours).await?;
        self.add_pending(&self.hours, hours.into_iter());
        Ok(())
    }

    /// Writes `dirty=<new nonce>,clean=0` for each of `buckets`.
    async fn write_marks(&self, level: &Level, buckets: &BTreeSet<i64>) -> Result<(), InfluxError> {
        if buckets.is_empty() {
            return Ok(());
        }
        let nonce = rand::random::<u64>() >> 1 | 1;
        let mut lines = String::with_capacity(buckets.len() * 48);
        for bucket in buckets {
            let _ = writeln!(
                lines,
                "{} dirty={nonce}i,clean=0i {}",
                level.measurement,
                bucket * level.width * 1_000_000_000
            );
        }
        self.influx.write(lines).await
    }

    /// Notes `buckets` for the next refresh, under a new sequence number.
    fn add_pending(&self, state: &LevelState, buckets: impl Iterator<Item = i64>) {
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed);
        let mut pending = state.pending.lock().expect("not poisoned");
        pending.extend(buckets.map(|bucket| (bucket, sequence)));
    }

    /// Refreshes every second and then every hour this instance has
    /// pending.
    pub async fn refresh(&self) -> Result<(), InfluxError> {
        self.refresh_round(None).await
    }

    /// Refreshes the pending seconds, marks their hours dirty again (now
    /// that the seconds' totals are written) and refreshes the pending
    /// hours. With `give_way`, the hours stop, after at least one query,
    /// as soon as a writer has marked seconds since `give_way` was read
    /// from `marks`; the rest wait for the next round.
    async fn refresh_round(&self, give_way: Option<u64>) -> Result<(), InfluxError> {
        let started = Instant::now();
        let refreshed = self.refresh_level(&self.seconds, None).await?;
        if !refreshed.is_empty() {
            self.seconds_refresh
                .observe(started.elapsed().as_secs_f64());
            self.visible.changed();
        }
        let hours = hours_of(refreshed.into_iter());
        if !hours.is_empty() {
            // Pending first: should the mark fail, the writer's mark still
            // keeps these hours dirty, and they are refreshed next round.
            self.add_pending(&self.hours, hours.iter().copied());
            self.write_marks(&HOURS, &hours).await?;
        }
        self.refresh_level(&self.hours, give_way).await?;
        Ok(())
    }

    /// Refreshes the pending buckets of one level and returns those
    /// refreshed. A bucket whose totals InfluxDB refuses to compute (a sum
    /// of stored amounts that overflows, say) stays pending and is retried,
    /// but never holds back the others: a refused run is refreshed again one
    /// bucket at a time, and runs of refused buckets come last. An outage
    /// ends the round; everything left is retried on the next.
    async fn refresh_level(
        &self,
        state: &LevelState,
        give_way: Option<u64>,
    ) -> Result<Vec<i64>, InfluxError> {
        let snapshot: Vec<(i64, u64)> = {
            let pending = state.pending.lock().expect("not poisoned");
            pending.iter().map(|(b, q)| (*b, *q)).collect()
        };
        let mut runs = runs(state.level, snapshot.iter().map(|(bucket, _)| *bucket));
        {
            // Runs holding a refused bucket last, so that retrying them
            // never comes before the others when hours give way (stable:
            // otherwise in time order).
            let failing = state.refused.lock().expect("not poisoned");
            runs.sort_by_key(|(first, last)| failing.range(*first..=*last).next().is_some());
        }
        let mut refused = BTreeSet::new();
        let mut done = Vec::new();
        for (queries, (first, last)) in runs.into_iter().enumerate() {
            if queries > 0
                && give_way.is_some_and(|seen| self.marks.load(Ordering::Relaxed) != seen)
            {
                break;
            }
            match self.refresh_range(state.level, first, last + 1).await {
                Ok(()) => done.push((first, last)),
                Err(InfluxError::Rejected { .. }) if first < last => {
                    let buckets = snapshot.iter().map(|(b, _)| *b);
                    for bucket in buckets.filter(|b| (first..=last).contains(b)) {
                        match self.refresh_range(state.level, bucket, bucket + 1).await {
                            Ok(()) => done.push((bucket, bucket)),
                            Err(error @ InfluxError::Rejected { .. }) => {
                                self.note_refused(state, bucket, &error);
                                refused.insert(bucket);
                            }
                            Err(error) => return Err(error),
                        }
                    }
                }
                Err(error @ InfluxError::Rejected { .. }) => {
                    self.note_refused(state, first, &error);
                    refused.insert(first);
                }
                Err(error) => return Err(error),
            }
        }
        done.sort_unstable();
        let was_done = |bucket: i64| {
            let after = done.partition_point(|(first, _)| *first <= bucket);
            after > 0 && done[after - 1].1 >= bucket
        };
        let mut refreshed = Vec::new();
        let mut pending = state.pending.lock().expect("not poisoned");
        let mut failing = state.refused.lock().expect("not poisoned");
        for (bucket, sequence) in snapshot {
            if refused.contains(&bucket) || !was_done(bucket) {
                continue;
            }
            failing.remove(&bucket);
            refreshed.push(bucket);
            // A bucket marked again meanwhile stays pending.
            if pending.get(&bucket) == Some(&sequence) {
                pending.remove(&bucket);
            }
        }
        Ok(refreshed)
    }

    /// Logs a bucket whose totals InfluxDB refuses, once until it recovers.
    fn note_refused(&self, state: &LevelState, bucket: i64, error: &InfluxError) {
        if state.refused.lock().expect("not poisoned").insert(bucket) {
            tracing::error!(
                unit = state.level.name,
                bucket,
                error = %Chain(error),
                "influxdb refuses a bucket's totals; retrying it without holding back the others"
            );
        }
    }

    /// Seconds whose totals InfluxDB currently refuses to compute.
    pub fn refused_seconds(&self) -> usize {
        self.seconds.refused.lock().expect("not poisoned").len()
    }

    /// Seconds and hours left dirty in InfluxDB by any instance, for
    /// example by one that crashed between storing events and refreshing
    /// their totals; within `lookback` of now, or all of them. Returns how
    /// many seconds and how many hours.
    pub async fn recover(&self, lookback: Option<Duration>) -> Result<(usize, usize), InfluxError> {
        let since = lookback.map_or(String::new(), |d| {
            format!(" AND time > now() - {}s", d.as_secs())
        });
        let mut found = [0; 2];
        for (state, found) in [&self.seconds, &self.hours].into_iter().zip(&mut found) {
            let level = state.level;
            // A page at a time: InfluxDB cuts longer answers short (its
            // row limit), and a long outage or a crash under load leaves
            // more dirty seconds than that.
            let mut after = String::new();
            loop {
                let answer = self
                    .influx
                    .query(&format!(
                        "SELECT dirty FROM {} WHERE dirty <> clean{since}{after} \
                         LIMIT {RECOVER_PAGE}",
                        level.measurement
                    ))
                    .await?;
                let times: Vec<i64> = rows(&answer)
                    .filter_map(|row| row.first()?.as_i64())
                    .collect();
                *found += times.len();
                self.add_pending(
                    state,
                    times.iter().map(|ms| ms.div_euclid(1000 * level.width)),
                );
                match times.last() {
                    Some(last) if times.len() == RECOVER_PAGE => {
                        after = format!(" AND time > {last}ms");
                    }
                    _ => break,
                }
            }
        }
        Ok((found[0], found[1]))
    }

    /// Totals for what was stored before consumer-low kept them (an
    /// upgraded installation), computed by InfluxDB itself (`SELECT …
    /// INTO`): per second when no second has totals yet but events exist,
    /// a day at a time; then per hour when no hour has totals yet but
    /// seconds do, a week at a time.
    pub async fn backfill(&self) -> Result<(), InfluxError> {
        const DAY_MS: i64 = 86_400_000;
        if !self.has_totals(ROLLUP_MEASUREMENT).await? {
            if let Some((first, last)) = self.span(MEASUREMENT, "amount").await? {
                tracing::info!("computing the per-second totals of the events stored so far");
                self.select_into(first, last, DAY_MS, |from, to| {
                    format!(
                        "SELECT count(amount) AS count, sum(amount) AS sum, min(amount) AS min, \
                         max(amount) AS max INTO {ROLLUP_MEASUREMENT} FROM {MEASUREMENT} \
                         WHERE time >= {from}ms AND time < {to}ms GROUP BY time(1s) fill(none)"
                    )
                })
                .await?;
            }
        }
        if !self.has_totals(HOUR_MEASUREMENT).await? {
            if let Some((first, last)) = self.span(ROLLUP_MEASUREMENT, "count").await? {
                tracing::info!("computing the per-hour totals of the seconds stored so far");
                self.select_into(first, last, 7 * DAY_MS, |from, to| {
                    format!(
                        "SELECT sum(count) AS count, sum(sum) AS sum, min(min) AS min, \
                         max(max) AS max INTO {HOUR_MEASUREMENT} FROM {ROLLUP_MEASUREMENT} \
                         WHERE time >= {from}ms AND time < {to}ms GROUP BY time(1h) fill(none)"
                    )
                })
                .await?;
            }
        }
        Ok(())
    }

    /// Whether any bucket of `measurement` has totals.
    async fn has_totals(&self, measurement: &str) -> Result<bool, InfluxError> {
        let answer = self
            .influx
            .query(&format!("SELECT count(count) FROM {measurement}"))
            .await?;
        let counted = rows(&answer).any(|row| row.get(1).and_then(|n| n.as_f64()) > Some(0.0));
        Ok(counted)
    }

    /// The times (Unix ms) of the first and last values of `field`.
    async fn span(
        &self,
        measurement: &str,
        field: &str,
    ) -> Result<Option<(i64, i64)>, InfluxError> {
        let time_of = |answer: Value| rows(&answer).next()?.first()?.as_i64();
        let first = self
            .influx
            .query(&format!("SELECT first({field}) FROM {measurement}"))
            .await?;
        let last = self
            .influx
            .query(&format!("SELECT last({field}) FROM {measurement}"))
            .await?;
        Ok(time_of(first).zip(time_of(last)))
    }

    /// Runs `query(from, to)` for each `chunk` (ms, epoch-aligned) from the
    /// one holding `first` to the one holding `last`.
    async fn select_into(
        &self,
        first: i64,
        last: i64,
        chunk: i64,
        query: impl Fn(i64, i64) -> String,
    ) -> Result<(), InfluxError> {
        let mut from = first.div_euclid(chunk) * chunk;
        while from <= last {
            self.influx.query(&query(from, from + chunk)).await?;
            from += chunk;
        }
        Ok(())
    }

    /// Recomputes the totals of the dirty buckets in `from..to` (bucket
    /// indices) of `level` from the level below.
    async fn refresh_range(&self, level: &Level, from: i64, to: i64) -> Result<(), InfluxError> {
        let reading = if level.width == 1 {
            self.read_seconds(from, to).await?
        } else {
            self.read_hours(level, from, to).await?
        };
        if reading.marks.is_empty() {
            return Ok(());
        }
        let mut lines = String::new();
        for (ms, nonce) in reading.marks {
            let total = reading.totals.get(&ms).copied().unwrap_or_default();
            let _ = write!(
                lines,
                "{} count={}i,sum={}",
                level.measurement, total.count, total.sum
            );
            if let (Some(min), Some(max)) = (total.min, total.max) {
                let _ = write!(lines, ",min={min},max={max}");
            }
            if !reading.unsettled.contains(&ms) {
                let _ = write!(lines, ",clean={nonce}i");
            }
            let _ = writeln!(lines, " {}", ms * 1_000_000);
        }
        self.influx.write(lines).await
    }

    /// The marks of the dirty seconds in `from..to` (Unix seconds), then
    /// the totals of their events.
    async fn read_seconds(&self, from: i64, to: i64) -> Result<Reading, InfluxError> {
        // Marks first: see the module comment.
        let marks = self
            .influx
            .query(&format!(
                "SELECT dirty FROM {ROLLUP_MEASUREMENT} WHERE time >= {from}s AND time < {to}s \
                 AND dirty <> clean"
            ))
            .await?;
        let marks = marks_of(&marks);
        let totals = if marks.is_empty() {
            BTreeMap::new()
        } else {
            self.event_totals(from, to).await?
        };
        Ok(Reading {
            marks,
            totals,
            unsettled: BTreeSet::new(),
        })
    }

    /// In one request, whose statements InfluxDB runs in order: the marks
    /// of the dirty hours in `from..to` (Unix hours), which of them hold
    /// dirty seconds, and the totals of their seconds. One request keeps
    /// an hour's refresh to one query (see `maintain`).
    async fn read_hours(&self, level: &Level, from: i64, to: i64) -> Result<Reading, InfluxError> {
        let range = format!(
            "time >= {}s AND time < {}s",
            from * level.width,
            to * level.width
        );
        let answer = self
            .influx
            .query(&format!(
                "SELECT dirty FROM {HOUR_MEASUREMENT} WHERE {range} AND dirty <> clean; \
                 SELECT count(dirty) FROM {ROLLUP_MEASUREMENT} WHERE {range} AND dirty <> clean \
                 GROUP BY time(1h) fill(none); \
                 SELECT sum(count), sum(sum), min(min), max(max) FROM {ROLLUP_MEASUREMENT} \
                 WHERE {range} GROUP BY time(1h) fill(none)"
            ))
            .await?;
        let unsettled = rows(&statement(&answer, 1))
            .filter(|row| row.get(1).and_then(Value::as_i64) > Some(0))
            .filter_map(|row| row.first()?.as_i64())
            .collect();
        Ok(Reading {
            marks: marks_of(&statement(&answer, 0)),
            totals: totals_of(&statement(&answer, 2)),
            unsettled,
        })
    }

    /// The totals of each second in `from..to` (Unix seconds) that holds
    /// events, by the second's start in ms, summed here from the amounts a
    /// page at a time. InfluxDB 1.x opens a cursor per shard series and per
    /// aggregate, so asking it for the four aggregates costs about four
    /// times reading the amounts: 470 against 110 ms of its CPU for 33
    /// seconds of a backlog (16 500 points), 200 against 57 ms for one
    /// second. This refresh is on the path of every event to the chart, and
    /// it was most of InfluxDB's work while a backlog drained. A second that
    /// alone fills a page is totalled by InfluxDB instead.
    async fn event_totals(&self, from: i64, to: i64) -> Result<BTreeMap<i64, Total>, InfluxError> {
        let mut totals = BTreeMap::new();
        let mut start = from;
        while start < to {
            let answer = self
                .influx
                .query(&format!(
                    "SELECT amount FROM {MEASUREMENT} WHERE time >= {start}s AND time < {to}s \
                     LIMIT {AMOUNTS_PAGE}"
                ))
                .await?;
            let full = rows(&answer).count() >= AMOUNTS_PAGE;
            let amounts: Vec<(i64, f64)> = rows(&answer)
                .filter_map(|row| Some((row.first()?.as_i64()?, row.get(1)?.as_f64()?)))
                .collect();
            match add_page(&mut totals, &amounts, start, full) {
                Page::Last => break,
                Page::NextFrom(second) => start = second,
                Page::Dense(second) => {
                    totals.extend(self.aggregated_totals(second, second + 1).await?);
                    start = second + 1;
                }
            }
        }
        Ok(totals)
    }

    /// The totals of each second in `from..to` that holds events, computed
    /// by InfluxDB.
    async fn aggregated_totals(
        &self,
        from: i64,
        to: i64,
    ) -> Result<BTreeMap<i64, Total>, InfluxError> {
        let answer = self
            .influx
            .query(&format!(
                "SELECT count(amount), sum(amount), min(amount), max(amount) FROM {MEASUREMENT} \
                 WHERE time >= {from}s AND time < {to}s GROUP BY time(1s) fill(none)"
            ))
            .await?;
        Ok(totals_of(&answer))
    }

    /// How long the next round should wait for more late seconds, if every
    /// pending second is late.
    fn late_wait(&self, last_round: Option<Instant>) -> Option<Duration> {
        let newest = {
            let pending = self.seconds.pending.lock().expect("not poisoned");
            pending.last_key_value().map(|(second, _)| *second)
        };
        late_wait(
            newest,
            EventTime::now().as_millis(),
            last_round.map(|at| at.elapsed()),
        )
    }

    /// Refreshes as soon as seconds are marked (marks that arrive during a
    /// refresh are taken together by the next; late seconds wait, see
    /// `LATE`), and every `interval` to retry what failed, until `stop`,
    /// then once more. Each round refreshes the seconds, then the hours;
    /// the hours give way to seconds marked in the meantime after one
    /// query, so that hour work delays the next seconds' refresh by one
    /// hour query at most. Looks for buckets other instances left dirty:
    /// all of them at start (after a backfill if needed), then those of the
    /// last day every `RESCAN_INTERVAL` (a full scan reads one point per
    /// second of history).
    pub async fn maintain(&self, interval: Duration, stop: CancellationToken) {
        let mut last_scan: Option<Instant> = None;
        let mut last_round: Option<Instant> = None;
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
                    Ok((seconds, hours)) => {
                        if seconds + hours > 0 {
                            tracing::info!(seconds, hours, "refreshing the totals left dirty");
                        }
                        last_scan = Some(Instant::now());
                    }
                    // Nothing was ever written here: nothing to total. The
                    // sink creates the database with its first write; the
                    // first scan (backfill included) runs once it exists.
                    Err(InfluxError::NoDatabase(database)) => {
                        tracing::debug!(%database, "no database yet: no totals to look for")
                    }
                    Err(e) => {
                        tracing::warn!(error = %Chain(&e), "looking for dirty totals failed")
                    }
                }
            }
            if !stopping {
                if let Some(wait) = self.late_wait(last_round) {
                    tokio::select! {
                        () = stop.cancelled() => {}
                        () = tokio::time::sleep(wait) => {}
                    }
                }
            }
            last_round = Some(Instant::now());
            // Stopping: everything, so that what this instance wrote is
            // totalled before it exits.
            let give_way = (!stopping).then(|| self.marks.load(Ordering::Relaxed));
            if let Err(e) = self.refresh_round(give_way).await {
                tracing::warn!(error = %Chain(&e), "refreshing totals failed; will retry");
            }
            if stopping {
                return;
            }
        }
    }
}

/// How long a refresh round should wait, given the newest pending second
/// (Unix seconds), the time now (Unix ms) and how long ago the last round
/// began: nothing if a pending second is not late or no round has run.
fn late_wait(
    newest: Option<i64>,
    now_ms: i64,
    since_last_round: Option<Duration>,
) -> Option<Duration> {
    let late_ms = LATE.as_millis() as i64;
    let newest_end_ms = newest?.saturating_add(1).saturating_mul(1000);
    if now_ms.saturating_sub(newest_end_ms) < late_ms {
        return None;
    }
    Some(LATE_SPACING.saturating_sub(since_last_round?)).filter(|wait| !wait.is_zero())
}

/// The hours of some Unix seconds.
fn hours_of(seconds: impl Iterator<Item = i64>) -> BTreeSet<i64> {
    seconds
        .map(|second| second.div_euclid(HOURS.width))
        .collect()
}

/// Where totalling goes after a page of amounts (see `add_page`).
#[derive(Debug, PartialEq)]
enum Page {
    /// The page held every amount left.
    Last,
    /// The page was full: read again from this second, the last one the
    /// page reached, which may hold more.
    NextFrom(i64),
    /// This second alone filled the page: it needs InfluxDB's aggregates.
    Dense(i64),
}

/// Adds a page of `(ms, amount)`, read in time order from second `start`
/// (Unix seconds), to `totals`. A `full` page stopped at its limit, so
/// only the seconds before its last one are complete: those are added,
/// and the next page starts at that last second.
fn add_page(
    totals: &mut BTreeMap<i64, Total>,
    amounts: &[(i64, f64)],
    start: i64,
    full: bool,
) -> Page {
    let mut until = i64::MAX;
    if full {
        match amounts.last() {
            Some((ms, _)) if ms.div_euclid(1000) > start => until = ms.div_euclid(1000),
            _ => return Page::Dense(start),
        }
    }
    for &(ms, amount) in amounts {
        let second = ms.div_euclid(1000);
        if second < until {
            totals.entry(second * 1000).or_default().add(amount);
        }
    }
    if full {
        Page::NextFrom(until)
    } else {
        Page::Last
    }
}

/// `(bucket start in ms, dirty nonce)` of each row of a marks query.
fn marks_of(answer: &Value) -> Vec<(i64, i64)> {
    rows(answer)
        .filter_map(|row| Some((row.first()?.as_i64()?, row.get(1)?.as_i64()?)))
        .collect()
}

/// Totals by bucket start (ms) from rows of `time, count, sum, min, max`.
fn totals_of(answer: &Value) -> BTreeMap<i64, Total> {
    rows(answer)
        .filter_map(|row| {
            let number = |i: usize| row.get(i).and_then(Value::as_f64);
            let ms = row.first()?.as_i64()?;
            Some((
                ms,
                Total {
                    count: number(1).unwrap_or(0.0) as u64,
                    sum: number(2).unwrap_or(0.0),
                    min: number(3),
                    max: number(4),
                },
            ))
        })
        .collect()
}

/// One bucket's totals.
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

/// Sorted buckets as `(first, last)` runs, split where they are more than
/// `max_gap` apart or a run would span more than `max_run`.
fn runs(level: &Level, buckets: impl Iterator<Item = i64>) -> Vec<(i64, i64)> {
    let mut runs: Vec<(i64, i64)> = Vec::new();
    for bucket in buckets {
        match runs.last_mut() {
            Some((first, last))
                if bucket - *last <= level.max_gap && bucket - *first < level.max_run =>
            {
                *last = bucket
            }
            _ => runs.push((bucket, bucket)),
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
            runs(&SECONDS, seconds.into_iter()),
            [(10, 70), (200, 201), (10_000, 10_000)]
        );
        let long = (0..1500).step_by(50);
        assert_eq!(runs(&SECONDS, long), [(0, 550), (600, 1150), (1200, 1450)]);
    }

    #[test]
    fn only_late_seconds_wait_and_at_most_the_spacing_since_the_last_round() {
        let now_ms = 1_700_000_100_000;
        let recent = Some(Duration::from_millis(300));
        // A second that ended 2 s ago is not late: refreshed at once.
        assert_eq!(late_wait(Some(1_700_000_097), now_ms, recent), None);
        // One that ended 6 s ago is: the round waits out the spacing.
        assert_eq!(
            late_wait(Some(1_700_000_093), now_ms, recent),
            Some(LATE_SPACING - Duration::from_millis(300))
        );
        let long_ago = Some(LATE_SPACING * 2);
        assert_eq!(late_wait(Some(1_700_000_093), now_ms, long_ago), None);
        assert_eq!(late_wait(Some(1_700_000_093), now_ms, None), None);
        assert_eq!(late_wait(None, now_ms, recent), None);
        // Hostile stored times stay arithmetic, not panics.
        assert_eq!(late_wait(Some(i64::MAX), now_ms, recent), None);
        assert!(late_wait(Some(i64::MIN), now_ms, recent).is_some());
    }

    #[test]
    fn a_full_page_adds_only_the_seconds_it_read_to_the_end() {
        let page = [(10_000, 1.0), (10_500, 2.0), (11_200, 4.0), (12_000, 8.0)];
        let mut totals = BTreeMap::new();
        // Cut at its limit: second 12 may hold more, so it is read again.
        assert_eq!(add_page(&mut totals, &page, 10, true), Page::NextFrom(12));
        assert_eq!(totals.keys().copied().collect::<Vec<_>>(), [10_000, 11_000]);
        assert_eq!(totals[&10_000].count, 2);
        assert_eq!(totals[&10_000].sum, 3.0);
        assert_eq!(totals[&11_000].max, Some(4.0));
        // The next page is the last: all of it counts.
        let rest = [(12_000, 8.0), (12_999, -1.0), (19_000, 0.5)];
        assert_eq!(add_page(&mut totals, &rest, 12, false), Page::Last);
        let second = totals[&12_000];
        assert_eq!((second.count, second.sum), (2, 7.0));
        assert_eq!((second.min, second.max), (Some(-1.0), Some(8.0)));
        assert_eq!(totals[&19_000].count, 1);
    }

    #[test]
    fn a_second_that_fills_a_page_alone_is_left_to_influxdb() {
        let mut totals = BTreeMap::new();
        let dense = [(5_000, 1.0), (5_001, 1.0), (5_999, 1.0)];
        assert_eq!(add_page(&mut totals, &dense, 5, true), Page::Dense(5));
        assert!(totals.is_empty());
        // Before the epoch too: seconds round down, not towards zero.
        let early = [(-2_500, 1.0), (-1_200, 1.0)];
        assert_eq!(add_page(&mut totals, &early, -3, true), Page::NextFrom(-2));
        assert_eq!(totals.keys().copied().collect::<Vec<_>>(), [-3_000]);
        assert_eq!(add_page(&mut totals, &[], 7, false), Page::Last);
    }

    #[test]
    fn only_neighbouring_hours_share_a_query_and_at_most_a_day() {
        let hours = [5, 6, 8, 9, 10];
        assert_eq!(runs(&HOURS, hours.into_iter()), [(5, 6), (8, 10)]);
        assert_eq!(runs(&HOURS, 0..50), [(0, 23), (24, 47), (48, 49)]);
        assert_eq!(
            hours_of([3599, 3600, 7_199, 86_400].into_iter()),
            BTreeSet::from([0, 1, 24])
        );
    }
}
