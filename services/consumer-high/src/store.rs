//! The TimescaleDB sink: one statement per batch, idempotent by event id.

use sqlx::PgPool;
use streamproc_event::LoggedEvent;
use streamproc_kafka::consume::{Sink, SinkError};
use streamproc_store::timescale::PostgresArgs;
use tokio::sync::OnceCell;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Inserts the ids that are new into `event_ids` and, in the same statement
/// (so in one transaction), the rows of exactly those ids into `events`
/// (with the Kafka record each came from and the time of the write) and
/// their totals into `events_per_second` and `events_per_hour`. A
/// redelivered or retried event finds its id taken and adds nothing to any.
///
/// The totals are upserted in ascending order, seconds and hours alike, so
/// that two instances writing overlapping seconds or hours lock the rows in
/// the same order and cannot deadlock: every execution of this statement
/// runs its data-modifying CTEs in the same order (PostgreSQL runs those
/// nothing reads after the main query, one after the other), so each
/// writer takes its second rows, then its hour rows, each ascending. A
/// data-modifying CTE runs even though nothing reads it.
const INSERT: &str = "
WITH batch AS (
    SELECT DISTINCT ON (id) id, timestamptz 'epoch' + ms * interval '1 millisecond' AS time,
           ms, amount, kafka_partition, kafka_offset
    FROM unnest($1::text[], $2::bigint[], $3::float8[], $4::integer[], $5::bigint[])
        AS b(id, ms, amount, kafka_partition, kafka_offset)
),
fresh AS (
    INSERT INTO event_ids (id, time) SELECT id, time FROM batch
    ON CONFLICT (id) DO NOTHING
    RETURNING id
),
per_second AS (
    INSERT INTO events_per_second AS total (second, events, amount_sum, amount_min, amount_max)
    SELECT batch.ms / 1000, count(*), sum(batch.amount), min(batch.amount), max(batch.amount)
    FROM batch JOIN fresh USING (id)
    GROUP BY 1
    ORDER BY 1
    ON CONFLICT (second) DO UPDATE SET
        events = total.events + excluded.events,
        amount_sum = total.amount_sum + excluded.amount_sum,
        amount_min = least(total.amount_min, excluded.amount_min),
        amount_max = greatest(total.amount_max, excluded.amount_max)
),
per_hour AS (
    INSERT INTO events_per_hour AS total (hour, events, amount_sum, amount_min, amount_max)
    SELECT batch.ms / 3600000, count(*), sum(batch.amount), min(batch.amount), max(batch.amount)
    FROM batch JOIN fresh USING (id)
    GROUP BY 1
    ORDER BY 1
    ON CONFLICT (hour) DO UPDATE SET
        events = total.events + excluded.events,
        amount_sum = total.amount_sum + excluded.amount_sum,
        amount_min = least(total.amount_min, excluded.amount_min),
        amount_max = greatest(total.amount_max, excluded.amount_max)
)
INSERT INTO events (time, amount, id, kafka_partition, kafka_offset, stored_at)
SELECT batch.time, batch.amount, batch.id, batch.kafka_partition, batch.kafka_offset, now()
FROM batch JOIN fresh USING (id)";

/// Records the batch's valid events in the ledger of accepted events (see
/// migration 0005): the ids that are new into `accepted_ids` and, in the
/// same statement, their counts per second and route into
/// `accepted_per_second`, in ascending order as in [`INSERT`]. A redelivered
/// or retried event finds its id taken and counts nothing.
const RECORD_ACCEPTED: &str = "
WITH batch AS (
    SELECT DISTINCT ON (id) id, ms / 1000 AS second, high
    FROM unnest($1::text[], $2::bigint[], $3::boolean[]) AS b(id, ms, high)
),
fresh AS (
    INSERT INTO accepted_ids (id) SELECT id FROM batch
    ON CONFLICT (id) DO NOTHING
    RETURNING id
)
INSERT INTO accepted_per_second AS total (second, high, low)
SELECT batch.second, count(*) FILTER (WHERE batch.high), count(*) FILTER (WHERE NOT batch.high)
FROM batch JOIN fresh USING (id)
GROUP BY 1
ORDER BY 1
ON CONFLICT (second) DO UPDATE SET
    high = total.high + excluded.high,
    low = total.low + excluded.low";

pub struct TimescaleSink {
    pool: PgPool,
    /// Migrations run once, on the first write or check that reaches the
    /// database, so the service can start before PostgreSQL.
    schema: OnceCell<()>,
    target: String,
}

impl TimescaleSink {
    pub fn new(args: &PostgresArgs) -> anyhow::Result<Self> {
        Ok(Self {
            pool: args.lazy_pool()?,
            schema: OnceCell::new(),
            target: args.describe(),
        })
    }

    async fn ensure_schema(&self) -> Result<(), SinkError> {
        self.schema
            .get_or_try_init(|| async {
                MIGRATOR.run(&self.pool).await.map_err(|source| {
                    SinkError::Unavailable(
                        MigrationFailed {
                            target: self.target.clone(),
                            source,
                        }
                        .into(),
                    )
                })?;
                let timescale: bool = sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')",
                )
                .fetch_one(&self.pool)
                .await
                .map_err(unavailable)?;
                if timescale {
                    tracing::info!(
                        database = %self.target,
                        "schema ready; events is a hypertable"
                    );
                } else {
                    tracing::warn!(
                        database = %self.target,
                        "timescaledb is not installed; events is a plain postgresql table"
                    );
                }
                Ok(())
            })
            .await
            .map(|_| ())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("migrating {target}")]
struct MigrationFailed {
    target: String,
    source: sqlx::migrate::MigrateError,
}

fn unavailable(error: sqlx::Error) -> SinkError {
    SinkError::Unavailable(error.into())
}

/// SQLSTATE classes 22 (data exception: a value out of range, say) and 23
/// (integrity constraint violation) are about the rows written: the same
/// rows fail again however long one waits, so the consume loop isolates
/// them. Anything else (connection lost, server shutting down, lock
/// timeout, a missing table) is treated as an outage and retried.
fn write_error(error: sqlx::Error) -> SinkError {
    let data_error = error
        .as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code.starts_with("22") || code.starts_with("23"));
    if data_error {
        SinkError::Rejected(error.into())
    } else {
        unavailable(error)
    }
}

impl Sink for TimescaleSink {
    async fn write(&self, events: &[LoggedEvent]) -> Result<(), SinkError> {
        self.ensure_schema().await?;
        let ids: Vec<&str> = events.iter().map(|e| e.event.id.as_str()).collect();
        let times: Vec<i64> = events.iter().map(|e| e.event.time.as_millis()).collect();
        let amounts: Vec<f64> = events.iter().map(|e| e.event.amount.value()).collect();
        let partitions: Vec<i32> = events.iter().map(|e| e.position.partition).collect();
        let offsets: Vec<i64> = events.iter().map(|e| e.position.offset).collect();
        let inserted = sqlx::query(INSERT)
            .bind(&ids)
            .bind(&times)
            .bind(&amounts)
            .bind(&partitions)
            .bind(&offsets)
            .execute(&self.pool)
            .await
            .map_err(write_error)?
            .rows_affected();
        if inserted < events.len() as u64 {
            tracing::info!(
                stored_before = events.len() as u64 - inserted,
                events = events.len(),
                "events were stored before (redelivered or retried); kept one copy"
            );
        }
        Ok(())
    }

    /// `ours` are this consumer's (the high route), `others` the low
    /// route's.
    async fn record_accepted(
        &self,
        ours: &[LoggedEvent],
        others: &[LoggedEvent],
    ) -> Result<(), SinkError> {
        if ours.is_empty() && others.is_empty() {
            return Ok(());
        }
        self.ensure_schema().await?;
        let all = || ours.iter().chain(others);
        let ids: Vec<&str> = all().map(|e| e.event.id.as_str()).collect();
        let times: Vec<i64> = all().map(|e| e.event.time.as_millis()).collect();
        let high: Vec<bool> = ours
            .iter()
            .map(|_| true)
            .chain(others.iter().map(|_| false))
            .collect();
        sqlx::query(RECORD_ACCEPTED)
            .bind(&ids)
            .bind(&times)
            .bind(&high)
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(write_error)
    }

    async fn check(&self) -> Result<(), SinkError> {
        self.ensure_schema().await?;
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(unavailable)
    }
}
