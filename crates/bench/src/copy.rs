//! The TimescaleDB sink baseline: binary COPY, PostgreSQL's fastest way in,
//! of the rows consumer-high stores, into a table like its `events`.

use std::time::{Duration, UNIX_EPOCH};

use anyhow::{bail, Context};
use futures_util::pin_mut;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::NoTls;

use crate::cpu::Watch;
use crate::events::{self, Side};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// postgres://user@host:port/database
    #[arg(long)]
    postgres_url: String,
    /// Rows to copy, timed.
    #[arg(long)]
    events: usize,
    /// The table to create (dropped first if it exists).
    #[arg(long, default_value = "baseline_events")]
    table: String,
}

pub async fn run(args: Args, watch: &Watch) -> anyhow::Result<serde_json::Value> {
    if !args
        .table
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        bail!("--table must be a plain identifier, got {:?}", args.table);
    }
    let (client, connection) = tokio_postgres::connect(&args.postgres_url, NoTls)
        .await
        .context("connecting to PostgreSQL")?;
    let connection = tokio::spawn(connection);

    // consumer-high's migration 0001, for this table: the same columns and
    // types, logged, a hypertable on `time` when TimescaleDB can be had,
    // else a plain table with an index on time. Its other table, event_ids,
    // and the per-second totals are consumer-high's own work, which the
    // ratio to this baseline includes.
    let table = &args.table;
    client
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {table};
             CREATE TABLE {table} (
                 time   timestamptz      NOT NULL,
                 amount double precision NOT NULL,
                 id     text             NOT NULL
             );
             DO $$
             BEGIN
                 IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')
                    AND position('timescaledb' IN current_setting('shared_preload_libraries', true)) > 0
                    AND EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') THEN
                     CREATE EXTENSION timescaledb;
                 END IF;
                 IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
                     PERFORM create_hypertable('{table}', 'time');
                 ELSE
                     CREATE INDEX ON {table} (time DESC);
                 END IF;
             END
             $$;"
        ))
        .await
        .with_context(|| format!("creating {table}"))?;
    let hypertable: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')",
            &[],
        )
        .await?
        .get(0);

    let rows = events::generate(&events::run_id(), args.events, Side::High)?;
    let stopwatch = watch.start();
    let sink = client
        .copy_in(&format!(
            "COPY {table} (time, amount, id) FROM STDIN (FORMAT binary)"
        ))
        .await?;
    let writer = BinaryCopyInWriter::new(sink, &[Type::TIMESTAMPTZ, Type::FLOAT8, Type::TEXT]);
    pin_mut!(writer);
    for event in &rows {
        // Non-negative: the events are generated at the current time.
        let time =
            UNIX_EPOCH + Duration::from_millis(u64::try_from(event.time.as_millis()).unwrap_or(0));
        let row: [&(dyn ToSql + Sync); 3] = [&time, &event.amount.value(), &event.id.as_str()];
        writer.as_mut().write(&row).await?;
    }
    let copied = writer.finish().await?;
    let timed = stopwatch.stop();
    if copied != args.events as u64 {
        bail!("copied {copied} rows of {}", args.events);
    }

    drop(client);
    connection.await??;
    Ok(crate::report(
        "copy",
        "rows/s",
        args.events,
        timed,
        serde_json::json!({
            "table": table,
            "hypertable": hypertable,
            "format": "binary COPY, one statement",
        }),
    ))
}
