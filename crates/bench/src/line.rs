//! The InfluxDB sink baseline: consumer-low's points, encoded by its own
//! encoder, written in large requests one after another.

use anyhow::{bail, Context};

use crate::cpu::Watch;
use crate::events::{self, Side};
use streamproc_event::{EventTime, LogPosition, LoggedEvent};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// InfluxDB 1.x base URL, http://host:port
    #[arg(long)]
    influx_url: String,
    /// Database to write to; created if missing. Keep it apart from
    /// consumer-low's, whose counts the benchmark reads.
    #[arg(long)]
    db: String,
    /// Points to write, timed.
    #[arg(long)]
    events: usize,
    /// Points per /write request.
    #[arg(long, default_value_t = 5_000)]
    per_request: usize,
}

pub async fn run(args: Args, watch: &Watch) -> anyhow::Result<serde_json::Value> {
    if args.per_request == 0 {
        bail!("--per-request must be at least 1");
    }
    let base = args.influx_url.trim_end_matches('/');
    let http = reqwest::Client::new();
    let created = http
        .post(format!("{base}/query"))
        .query(&[("q", format!("CREATE DATABASE \"{}\"", args.db))])
        .send()
        .await
        .with_context(|| format!("reaching InfluxDB at {base}"))?;
    if !created.status().is_success() {
        bail!("creating database {}: {}", args.db, created.status());
    }

    let points: Vec<LoggedEvent> = events::generate(&events::run_id(), args.events, Side::Low)?
        .into_iter()
        .zip(0..)
        .map(|(event, offset)| LoggedEvent {
            event,
            position: LogPosition {
                partition: 0,
                offset,
            },
        })
        .collect();
    // Encoded before the clock starts: this is the store's rate for the
    // bytes consumer-low sends, and encoding is consumer-low's own work.
    let stored_at = EventTime::now().as_millis();
    let bodies: Vec<String> = points
        .chunks(args.per_request)
        .map(|chunk| streamproc_store::line::encode(chunk, stored_at))
        .collect();
    let write = format!("{base}/write");
    let stopwatch = watch.start();
    for body in bodies {
        let answer = http
            .post(&write)
            .query(&[("db", args.db.as_str()), ("precision", "ns")])
            .body(body)
            .send()
            .await?;
        if !answer.status().is_success() {
            let status = answer.status();
            bail!("/write answered {status}: {}", answer.text().await?);
        }
    }
    let timed = stopwatch.stop();
    Ok(crate::report(
        "line",
        "points/s",
        args.events,
        timed,
        serde_json::json!({
            "per_request": args.per_request,
            "db": args.db,
            "encoder": "streamproc_store::line::encode",
        }),
    ))
}
