//! The low series from InfluxDB, read from the per-second totals that
//! consumer-low maintains (`event_1s`, refreshed right after each write),
//! by InfluxQL `GROUP BY time()`, whose buckets are aligned to the epoch
//! like the TimescaleDB ones; the totals, and buckets of whole hours, from
//! its per-hour totals (`event_1h`, refreshed right after the seconds).
//! Only numbers from a validated [`Grid`] enter a query.

use std::collections::BTreeSet;

use serde_json::Value;
use streamproc_event::{EventId, EventTime};
use streamproc_store::influx::{
    rows, statement, Influx, InfluxArgs, MEASUREMENT, ROLLUP_MEASUREMENT,
};
use streamproc_store::line::point_identity;

use super::{Buckets, Store, StoreError, StoredEvent, Totals};

/// consumer-low's per-hour totals of `event_1s` (its `rollup` module).
const HOUR_MEASUREMENT: &str = streamproc_event::names::EVENT_PER_HOUR_MEASUREMENT;
use crate::series::Stats;
use streamproc_grid::Grid;

/// What [`InfluxReader::stored_counts`] read.
pub struct StoredCounts {
    /// Events stored, by bucket start (Unix ms), oldest first; empty
    /// buckets left out.
    pub counts: Vec<(i64, u64)>,
    /// Buckets whose totals are being refreshed.
    pub unsettled: BTreeSet<i64>,
}

pub struct InfluxReader {
    influx: Influx,
}

impl InfluxReader {
    pub fn new(args: InfluxArgs) -> anyhow::Result<Self> {
        Ok(Self {
            influx: Influx::new(args)?,
        })
    }

    pub async fn buckets(&self, grid: &Grid) -> Result<Buckets, StoreError> {
        // Buckets of whole hours from the hours: a point per hour read
        // instead of up to 3 600.
        let measurement = if whole_hours(grid) {
            HOUR_MEASUREMENT
        } else {
            ROLLUP_MEASUREMENT
        };
        let query = format!(
            "SELECT sum(count), sum(sum), min(min), max(max) FROM {measurement} \
             WHERE time >= {}ms AND time < {}ms GROUP BY time({}ms) fill(none)",
            grid.start_ms(),
            grid.end_ms(),
            grid.step_ms()
        );
        let answer = self.influx.query(&query).await?;
        let mut buckets = Vec::new();
        for row in rows(&answer) {
            let number = |i: usize| row.get(i).and_then(serde_json::Value::as_f64);
            let Some(start) = row.first().and_then(serde_json::Value::as_i64) else {
                return Err(StoreError::Unexpected {
                    store: "InfluxDB",
                    detail: format!("row {row:?}"),
                });
            };
            // Seconds marked but not yet totalled have no count yet.
            if let (Some(count), Some(min), Some(max)) = (number(1), number(3), number(4)) {
                let sum = number(2).unwrap_or(0.0);
                let count = count as u64;
                buckets.push((
                    start,
                    Stats {
                        count,
                        sum,
                        min,
                        max,
                    },
                ));
            }
        }
        Ok(buckets)
    }

    pub async fn totals(&self) -> Result<Totals, StoreError> {
        let query =
            |q: String| async move { self.influx.query(&q).await.map_err(StoreError::from) };
        // Count and sum from one point per hour of history rather than one
        // per second, so the cost does not grow with the events stored.
        let (mut totals, last_time) = tokio::try_join!(
            query(format!(
                "SELECT sum(count), sum(sum) FROM {HOUR_MEASUREMENT}"
            )),
            self.last_time(),
        )?;
        if rows(&totals).next().is_none() {
            // No hour has totals yet: a consumer-low of an earlier release,
            // or one still computing them from the seconds at its first
            // start. The seconds are right, only slower to sum.
            totals = query(format!(
                "SELECT sum(count), sum(sum) FROM {ROLLUP_MEASUREMENT}"
            ))
            .await?;
        }
        let row = rows(&totals).next();
        let number = |i: usize| {
            row.and_then(|r| r.get(i))
                .and_then(serde_json::Value::as_f64)
        };
        Ok(Totals {
            count: number(1).unwrap_or(0.0) as u64,
            sum: number(2).unwrap_or(0.0),
            last_time,
        })
    }

    /// The start of the newest second holding events. InfluxDB 1.x reads
    /// every point for an unbounded `last()`, so the newest hour is found
    /// first (one point per hour), then the newest second from that hour
    /// on: seconds after it whose hour has no totals yet count too.
    async fn last_time(&self) -> Result<Option<i64>, StoreError> {
        let first_time = |answer: &serde_json::Value| {
            rows(answer)
                .next()
                .and_then(|r| r.first())
                .and_then(serde_json::Value::as_i64)
        };
        let query =
            |q: String| async move { self.influx.query(&q).await.map_err(StoreError::from) };
        let hour = query(format!("SELECT last(count) FROM {HOUR_MEASUREMENT}")).await?;
        let since = first_time(&hour).map_or(String::new(), |ms| format!(" WHERE time >= {ms}ms"));
        let last = query(format!(
            "SELECT last(count) FROM {ROLLUP_MEASUREMENT}{since}"
        ))
        .await?;
        Ok(first_time(&last))
    }

    /// The event `id` stored at `time`: its point is known exactly (see
    /// `streamproc_store::line`), so this reads one series at one instant.
    pub async fn find(
        &self,
        id: &EventId,
        time: EventTime,
    ) -> Result<Option<StoredEvent>, StoreError> {
        let point = point_identity(id, time);
        let answer = self
            .influx
            .query(&format!(
                "SELECT amount, id, kafka_partition, kafka_offset, stored_at FROM {MEASUREMENT} \
                 WHERE \"shard\" = '{}' AND time = {}",
                point.shard, point.time_ns
            ))
            .await?;
        // Two events share a point only if their ids' hashes collide: the
        // id stored tells.
        let Some(row) =
            rows(&answer).find(|row| row.get(2).and_then(Value::as_str) == Some(id.as_str()))
        else {
            return Ok(None);
        };
        let amount = row
            .get(1)
            .and_then(Value::as_f64)
            .ok_or_else(|| StoreError::Unexpected {
                store: "InfluxDB",
                detail: format!("point without an amount: {row:?}"),
            })?;
        let int = |i: usize| row.get(i).and_then(Value::as_i64);
        Ok(Some(StoredEvent {
            store: Store::InfluxDb,
            time: time.as_millis(),
            amount,
            partition: int(3).and_then(|p| i32::try_from(p).ok()),
            offset: int(4),
            stored_at: int(5),
        }))
    }

    /// Events stored per bucket of `grid`, from the per-second totals, and
    /// the buckets holding a second whose totals are not refreshed yet
    /// (`dirty <> clean`, see consumer-low's `rollup`): their counts may
    /// still change. The marks are read first, in the same request, so a
    /// refresh between the two reads can only make a count more right.
    pub async fn stored_counts(&self, grid: &Grid) -> Result<StoredCounts, StoreError> {
        let range = format!(
            "time >= {}ms AND time < {}ms",
            grid.start_ms(),
            grid.end_ms()
        );
        let group = format!("GROUP BY time({}ms) fill(none)", grid.step_ms());
        let answer = self
            .influx
            .query(&format!(
                "SELECT count(dirty) FROM {ROLLUP_MEASUREMENT} WHERE {range} AND dirty <> clean \
                 {group}; SELECT sum(count) FROM {ROLLUP_MEASUREMENT} WHERE {range} {group}"
            ))
            .await?;
        let unsettled = rows(&statement(&answer, 0))
            .filter(|row| row.get(1).and_then(Value::as_i64) > Some(0))
            .filter_map(|row| row.first()?.as_i64())
            .collect();
        let counts = rows(&statement(&answer, 1))
            .filter_map(|row| {
                let start = row.first()?.as_i64()?;
                let count = row.get(1)?.as_f64()?;
                Some((start, count as u64))
            })
            .collect();
        Ok(StoredCounts { counts, unsettled })
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        Ok(self.influx.ping().await?)
    }
}

/// Whether `grid`'s buckets are whole hours (its start is a multiple of its
/// step, so of an hour too; checked all the same).
fn whole_hours(grid: &Grid) -> bool {
    const HOUR_MS: i64 = 3_600_000;
    grid.step_ms() % HOUR_MS == 0 && grid.start_ms() % HOUR_MS == 0
}
