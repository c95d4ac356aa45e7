//! The high series from TimescaleDB, read from the per-second totals that
//! consumer-high maintains (`events_per_second`), so a window costs one row
//! per second at most, however many events it holds; the totals from its
//! per-hour totals (`events_per_hour`), as are buckets of whole hours.
//!
//! Buckets are whole numbers of seconds aligned to the epoch, which integer
//! division of the Unix second does exactly, with or without the TimescaleDB
//! extension; InfluxDB's `GROUP BY time()` uses the same grid.

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use streamproc_store::timescale::PostgresArgs;

use super::{Buckets, Store, StoreError, StoredEvent, Totals};
use crate::series::Stats;
use streamproc_event::{EventId, EventTime};
use streamproc_grid::Grid;

const BUCKETS: &str = "
SELECT (second / $3) * $3 * 1000 AS bucket,
       sum(events)::bigint, sum(amount_sum), min(amount_min), max(amount_max)
FROM events_per_second
WHERE second >= $1 AND second < $2
GROUP BY 1
ORDER BY 1";

/// Buckets of whole hours from the per-hour totals (`$1`, `$2` in Unix
/// hours, `$3` in seconds): a week at one hour reads 168 rows instead of up
/// to 604 800.
const HOUR_BUCKETS: &str = "
SELECT (hour * 3600 / $3) * $3 * 1000 AS bucket,
       sum(events)::bigint, sum(amount_sum), min(amount_min), max(amount_max)
FROM events_per_hour
WHERE hour >= $1 AND hour < $2
GROUP BY 1
ORDER BY 1";

/// Count and sum from the per-hour totals (one row per hour of history, so
/// the cost does not grow with the events stored, and ten years are 87 660
/// rows), and the newest hour holding events, where `NEWEST` starts.
const TOTALS: &str = "
SELECT coalesce(sum(events), 0)::bigint, coalesce(sum(amount_sum), 0), max(hour)
FROM events_per_hour";

/// One event by id: its time from `event_ids` (so the time index, and
/// TimescaleDB's chunks, narrow `events` to a few rows), or from the time
/// given (`$2`, Unix ms) for rows stored before `event_ids` kept times.
const FIND: &str = "
SELECT (extract(epoch FROM e.time) * 1000)::bigint AS time, e.amount,
       e.kafka_partition, e.kafka_offset,
       (extract(epoch FROM e.stored_at) * 1000)::bigint AS stored_at
FROM events e
WHERE e.id = $1
  AND e.time = coalesce(
      (SELECT time FROM event_ids WHERE id = $1),
      timestamptz 'epoch' + $2::bigint * interval '1 millisecond')
LIMIT 1";

/// Accepted events per bucket and route (`$1`, `$2` in Unix seconds, `$3`
/// the step in seconds), from the ledger consumer-high keeps.
const LEDGER: &str = "
SELECT (second / $3) * $3 * 1000 AS bucket, sum(high)::bigint, sum(low)::bigint
FROM accepted_per_second
WHERE second >= $1 AND second < $2
GROUP BY 1
ORDER BY 1";

/// Rows of `events` per bucket, counted from the rows themselves, not from
/// the totals: a row deleted or lost behind consumer-high's back shows.
const STORED_ROWS: &str = "
SELECT (floor(extract(epoch FROM time))::bigint / $3) * $3 * 1000 AS bucket, count(*)
FROM events
WHERE time >= timestamptz 'epoch' + $1::bigint * interval '1 second'
  AND time < timestamptz 'epoch' + $2::bigint * interval '1 second'
GROUP BY 1
ORDER BY 1";

/// A row of [`FIND`]; the origin is NULL for rows stored before it was kept.
#[derive(sqlx::FromRow)]
struct FoundRow {
    time: i64,
    amount: f64,
    kafka_partition: Option<i32>,
    kafka_offset: Option<i64>,
    stored_at: Option<i64>,
}

pub struct TimescaleReader {
    pool: PgPool,
    /// One connection of its own for `/readyz`, so that the probe never
    /// waits for a connection behind user queries (which can hold all of
    /// `pool`) and is not reported unready only because the service is busy.
    probe: PgPool,
}

impl TimescaleReader {
    /// Connects on first use, so the aggregator starts while PostgreSQL is
    /// down.
    pub fn new(args: &PostgresArgs) -> anyhow::Result<Self> {
        Ok(Self {
            pool: args.lazy_pool()?,
            probe: PgPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(5))
                .connect_lazy_with(args.connect_options()?),
        })
    }

    pub async fn buckets(&self, grid: &Grid) -> Result<Buckets, StoreError> {
        let (query, unit) = if whole_hours(grid) {
            (HOUR_BUCKETS, 3_600_000)
        } else {
            (BUCKETS, 1000)
        };
        let rows: Vec<(i64, i64, f64, f64, f64)> = sqlx::query_as(query)
            .bind(grid.start_ms() / unit)
            .bind(grid.end_ms() / unit)
            .bind(grid.step_ms() / 1000)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::from)?;
        Ok(rows
            .into_iter()
            .map(|(start, events, sum, min, max)| {
                (
                    start,
                    Stats {
                        count: count(events),
                        sum,
                        min,
                        max,
                    },
                )
            })
            .collect())
    }

    pub async fn totals(&self) -> Result<Totals, StoreError> {
        let (events, sum, newest_hour): (i64, f64, Option<i64>) = sqlx::query_as(TOTALS)
            .fetch_one(&self.pool)
            .await
            .map_err(StoreError::from)?;
        // The newest event time in ms, from `events`' time index, within
        // the newest hour and after. The bound is written into the query:
        // TimescaleDB leaves out the other chunks only for a constant, and
        // planning `max(time)` over every chunk costs about 70 ms at ten
        // years of weekly chunks (a bound from a subquery or a generic
        // plan's parameter is no better). One statement per hour holding
        // the newest event, so prepared once an hour per connection.
        let last_time = match newest_hour {
            Some(hour) => sqlx::query_scalar(&format!(
                "SELECT (extract(epoch FROM max(time)) * 1000)::bigint FROM events \
                 WHERE time >= to_timestamp({hour} * 3600)"
            ))
            .fetch_one(&self.pool)
            .await
            .map_err(StoreError::from)?,
            None => None,
        };
        Ok(Totals {
            count: count(events),
            sum,
            last_time,
        })
    }

    /// The event `id`, where it is stored.
    pub async fn find(
        &self,
        id: &EventId,
        time: Option<EventTime>,
    ) -> Result<Option<StoredEvent>, StoreError> {
        let row: Option<FoundRow> = sqlx::query_as(FIND)
            .bind(id.as_str())
            .bind(time.map(EventTime::as_millis))
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::from)?;
        Ok(row.map(|row| StoredEvent {
            store: Store::TimescaleDb,
            time: row.time,
            amount: row.amount,
            partition: row.kafka_partition,
            offset: row.kafka_offset,
            stored_at: row.stored_at,
        }))
    }

    /// Accepted events per bucket of `grid`: (start, high route, low route).
    pub async fn ledger(&self, grid: &Grid) -> Result<Vec<(i64, u64, u64)>, StoreError> {
        let rows: Vec<(i64, i64, i64)> = self.per_bucket(LEDGER, grid).await?;
        Ok(rows
            .into_iter()
            .map(|(start, high, low)| (start, count(high), count(low)))
            .collect())
    }

    /// Rows of `events` per bucket of `grid`.
    pub async fn stored_rows(&self, grid: &Grid) -> Result<Vec<(i64, u64)>, StoreError> {
        let rows: Vec<(i64, i64)> = self.per_bucket(STORED_ROWS, grid).await?;
        Ok(rows
            .into_iter()
            .map(|(start, rows)| (start, count(rows)))
            .collect())
    }

    /// Runs `query` with the grid's start and end (Unix seconds) and step
    /// (seconds) as `$1`, `$2`, `$3`.
    async fn per_bucket<T>(&self, query: &'static str, grid: &Grid) -> Result<Vec<T>, StoreError>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
    {
        sqlx::query_as(query)
            .bind(grid.start_ms() / 1000)
            .bind(grid.end_ms() / 1000)
            .bind(grid.step_ms() / 1000)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::from)
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.probe)
            .await
            .map(drop)
            .map_err(StoreError::from)
    }
}

/// A count from SQL's bigint, never negative.
fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// Whether `grid`'s buckets are whole hours (its start is a multiple of its
/// step, so of an hour too; checked all the same).
fn whole_hours(grid: &Grid) -> bool {
    const HOUR_MS: i64 = 3_600_000;
    grid.step_ms() % HOUR_MS == 0 && grid.start_ms() % HOUR_MS == 0
}
