//! A load client for event-api, native so that the client is never what
//! bounds the figure: C keep-alive connections, each sending its next
//! request as soon as the previous one is answered.

use std::cell::Cell;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::future::try_join_all;
use streamproc_event::Event;

use crate::cpu::Watch;
use crate::events::{self, Side};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// event-api's ingest URL, e.g. http://127.0.0.1:9998/v1/events
    #[arg(long)]
    url: String,
    /// Connections, each with one request outstanding at a time.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Events to POST, timed.
    #[arg(long)]
    events: usize,
    /// Events per request: 1 sends one JSON object, more a JSON array.
    #[arg(long, default_value_t = 1)]
    per_request: usize,
    /// Requests sent before the timing starts, so that every connection is
    /// open and event-api's producer is warm.
    #[arg(long, default_value_t = 1_000)]
    warmup_requests: usize,
}

pub async fn run(args: Args, watch: &Watch) -> anyhow::Result<serde_json::Value> {
    if args.connections == 0 || args.per_request == 0 {
        bail!("--connections and --per-request must be at least 1");
    }
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.connections)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(60))
        .build()?;
    let run = events::run_id();
    let warmup = bodies(
        &events::generate(
            &format!("{run}w"),
            args.warmup_requests * args.per_request,
            Side::Both,
        )?,
        args.per_request,
    );
    load(&http, &args.url, &warmup, args.connections)
        .await
        .context("warm-up")?;

    let requests = bodies(
        &events::generate(&run, args.events, Side::Both)?,
        args.per_request,
    );
    let stopwatch = watch.start();
    let mut latencies = load(&http, &args.url, &requests, args.connections).await?;
    let timed = stopwatch.stop();

    latencies.sort_unstable();
    let percentile = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let mut report = crate::report(
        "post",
        "events/s",
        args.events,
        timed,
        serde_json::json!({
            "connections": args.connections,
            "per_request": args.per_request,
            "requests": requests.len(),
        }),
    );
    report["request_ms"] = serde_json::json!({
        "p50": percentile(0.50),
        "p99": percentile(0.99),
        "max": percentile(1.0),
    });
    Ok(report)
}

/// Request bodies of `per_request` events each, in event-api's JSON format.
fn bodies(events: &[Event], per_request: usize) -> Vec<Vec<u8>> {
    events
        .chunks(per_request)
        .map(|chunk| match chunk {
            [one] if per_request == 1 => one.to_json_bytes(),
            many => {
                let mut body = b"[".to_vec();
                for (i, event) in many.iter().enumerate() {
                    if i > 0 {
                        body.push(b',');
                    }
                    body.extend_from_slice(&event.to_json_bytes());
                }
                body.push(b']');
                body
            }
        })
        .collect()
}

/// Sends every body over `connections` concurrent workers that take the
/// next body from a shared index; returns each request's latency. The
/// workers share one task (and this program's one thread), so the index
/// needs no lock.
async fn load(
    http: &reqwest::Client,
    url: &str,
    bodies: &[Vec<u8>],
    connections: usize,
) -> anyhow::Result<Vec<Duration>> {
    let next = Cell::new(0);
    let worker = || async {
        let mut latencies = Vec::new();
        loop {
            let i = next.get();
            let Some(body) = bodies.get(i) else {
                return anyhow::Ok(latencies);
            };
            next.set(i + 1);
            let started = Instant::now();
            let answer = http
                .post(url)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .with_context(|| format!("POST {url}"))?;
            let status = answer.status();
            // Read to the end, so that the connection is reused.
            let text = answer.bytes().await?;
            if status != reqwest::StatusCode::OK {
                bail!(
                    "POST {url} answered {status}: {}",
                    String::from_utf8_lossy(&text)
                );
            }
            latencies.push(started.elapsed());
        }
    };
    let per_worker = try_join_all((0..connections).map(|_| worker())).await?;
    Ok(per_worker.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamproc_event::EventBounds;

    #[test]
    fn bodies_are_one_object_or_an_array_that_event_api_accepts() {
        let events = events::generate("t", 5, Side::Both).unwrap();
        let bounds = EventBounds::DEFAULT.now();
        let single = bodies(&events, 1);
        assert_eq!(single.len(), 5);
        assert_eq!(
            Event::from_json_bytes(&single[3], &bounds).unwrap(),
            events[3]
        );
        let batches = bodies(&events, 2);
        assert_eq!(batches.len(), 3);
        let second: Vec<serde_json::Value> = serde_json::from_slice(&batches[1]).unwrap();
        assert_eq!(second.len(), 2);
        let last: Vec<serde_json::Value> = serde_json::from_slice(&batches[2]).unwrap();
        assert_eq!(last.len(), 1, "a last chunk of one is still an array");
    }
}
