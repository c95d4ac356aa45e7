//! The whole pipeline in one test: event-producer → event-api → Kafka
//! (tansu) → consumer-high / consumer-low → TimescaleDB / InfluxDB →
//! aggregator → web-ui → the page in headless Chromium. Every accepted event
//! is counted once by the aggregator, and the page shows what the API says,
//! live.

mod common;

use std::time::Duration;

use clap::Parser;
use serde_json::Value;
use testkit::{eventually, InProcess, Tansu};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const PRODUCED: u64 = 300;

async fn totals(aggregator: &InProcess) -> Option<(u64, u64)> {
    let body: Value = aggregator.get("/api/v1/totals").await.json().await.ok()?;
    Some((
        body["high"]["count"].as_u64()?,
        body["low"]["count"].as_u64()?,
    ))
}

/// Waits until the stores hold `expected` events in all and both consumer
/// groups have committed as many records of the topic (they commit only
/// after writing, so nothing is left to arrive late), then checks that the
/// stores hold exactly that many.
async fn assert_stored(aggregator: &InProcess, broker: &Tansu, expected: u64) -> (u64, u64) {
    let reached = eventually(Duration::from_secs(60), || async {
        totals(aggregator)
            .await
            .is_some_and(|(h, l)| h + l >= expected)
    })
    .await;
    assert!(
        reached,
        "stored {:?} of {expected}",
        totals(aggregator).await
    );
    for group in ["streamproc-consumer-high", "streamproc-consumer-low"] {
        let committed = broker
            .wait_committed(group, "events", expected as usize, Duration::from_secs(60))
            .await;
        assert!(committed, "{group} did not commit {expected} records");
    }
    let (high, low) = totals(aggregator).await.unwrap();
    assert_eq!(high + low, expected, "each accepted event stored once");
    (high, low)
}

/// `n` clients that ask web-ui for the event stream and never read a byte
/// of it.
async fn non_reading_streams(url: &str, n: usize) -> Vec<TcpStream> {
    let addr = url.trim_start_matches("http://");
    let mut streams = Vec::with_capacity(n);
    for _ in 0..n {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "GET /api/v1/stream?step=1s&last=60 HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        streams.push(stream);
    }
    streams
}

#[tokio::test]
async fn events_flow_from_the_producer_to_the_page() {
    let common::Pipeline {
        broker,
        event_api,
        high,
        low,
        aggregator,
        web_ui,
        // Bound, not `..`: a field left out would be dropped (stopped) here.
        postgres: _postgres,
        influx: _influx,
    } = common::start_pipeline(&[]).await;

    // A seeded producer run to completion: it drains before returning.
    let config = event_producer::Config::try_parse_from([
        "event-producer",
        "--url",
        &event_api.url,
        "--seed",
        "7",
        "--count",
        &PRODUCED.to_string(),
        "--rate",
        "200",
        "--interval",
        "100ms",
    ])
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let summary = event_producer::run(config, listener, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!((summary.sent, summary.lost), (PRODUCED, 0));

    let (stored_high, stored_low) = assert_stored(&aggregator, &broker, PRODUCED).await;
    assert!(stored_high > 0 && stored_low > 0, "both stores hold events");
    assert_eq!(
        event_api.metric("events_accepted_total").await,
        PRODUCED as f64
    );
    // The same answer through web-ui's forwarding.
    let through_ui: Value = web_ui.get("/api/v1/totals").await.json().await.unwrap();
    assert_eq!(through_ui["high"]["count"], stored_high);

    // MAX_STREAMS (64) clients hold a stream each and never read it; the
    // page must still go live within 10 s (page.mjs's first check).
    let hogs = non_reading_streams(&web_ui.url, 64).await;
    let held = eventually(Duration::from_secs(30), || async {
        aggregator.metric("stream_clients").await >= 64.0
    })
    .await;
    assert!(held, "the 64 streams did not open");

    // The page, in Debian's Chromium, against this pipeline; it posts four
    // more events through event-api, watches them arrive and traces one.
    let screenshots = common::run_browser_test(
        "tests/page.mjs",
        &["--url", &web_ui.url, "--event-api", &event_api.url],
        "page: 14 passed, 0 failed",
    )
    .await;
    assert!(screenshots.join("web-ui.png").is_file());
    assert!(
        aggregator
            .metric("streams_ended_total{reason=\"evicted\"}")
            .await
            >= 1.0,
        "the page's stream made room by ending the oldest"
    );
    drop(hogs);

    assert_stored(&aggregator, &broker, PRODUCED + 4).await;
    for service in [web_ui, aggregator, low, high, event_api] {
        service.stop().await;
    }
}
