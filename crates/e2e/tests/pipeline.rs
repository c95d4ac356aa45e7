//! The whole pipeline in one test: event-producer → event-api → Kafka
//! (tansu) → consumer-high / consumer-low → TimescaleDB / InfluxDB →
//! aggregator → web-ui → the page in headless Chromium. Every accepted event
//! is counted once by the aggregator, and the page shows what the API says,
//! live.

mod common;

use std::time::Duration;

use clap::Parser;
use serde_json::Value;
use streamproc_event::EventTime;
use testkit::{eventually, InProcess, InfluxDb, Postgres, Tansu};
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

/// The largest amount of the high series and the smallest of the low one
/// in a `series` event of the stream.
fn extremes(series: &Value) -> (f64, f64) {
    let values = |name: &str, key: &str| -> Vec<f64> {
        series[name]["points"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|point| point[key].as_f64())
            .collect()
    };
    (
        values("high", "max").into_iter().fold(f64::MIN, f64::max),
        values("low", "min").into_iter().fold(f64::MAX, f64::min),
    )
}

/// An open stream, read one `series` event at a time.
struct Stream {
    response: reqwest::Response,
    pending: String,
}

impl Stream {
    async fn next_series(&mut self) -> Value {
        loop {
            if let Some(end) = self.pending.find("\n\n") {
                let event: String = self.pending.drain(..end + 2).collect();
                if event.lines().any(|line| line == "event: series") {
                    let data = event
                        .lines()
                        .find_map(|line| line.strip_prefix("data: "))
                        .expect("a series event carries data");
                    return serde_json::from_str(data).unwrap();
                }
                continue;
            }
            let chunk = self
                .response
                .chunk()
                .await
                .unwrap()
                .expect("the stream stays open");
            self.pending.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// How long until the stream shows a high amount of at least `high`
    /// and a low one of at most `low`; `None` past `within`.
    async fn shows(&mut self, (high, low): (f64, f64), within: Duration) -> Option<Duration> {
        let started = std::time::Instant::now();
        tokio::time::timeout(within, async {
            loop {
                let (max, min) = extremes(&self.next_series().await);
                if max >= high && min <= low {
                    return started.elapsed();
                }
            }
        })
        .await
        .ok()
    }
}

/// With the consumers' URLs set, an open stream shows a stored event as
/// soon as each consumer tells it stored something, not on the stream's
/// tick (30 s here, so that only the consumers' word can explain a fresh
/// chart); also after a consumer restarts on the same URL.
#[tokio::test]
async fn the_stream_shows_stored_events_without_waiting_for_its_tick() {
    let broker = Tansu::start();
    broker.create_topic("events", 3).await;
    let postgres = Postgres::start();
    let influx = InfluxDb::start();
    let brokers = broker.brokers();
    let event_api = common::start_event_api(&brokers, &[]).await;
    let (high, low) =
        common::start_consumers(&brokers, &postgres, &influx, &["--batch-max-age", "20ms"]).await;
    let (aggregator, _web_ui) = common::start_read_side(
        &brokers,
        &postgres,
        &influx,
        &event_api.url,
        Some((&high, &low)),
        &["--stream-interval", "30s"],
    )
    .await;
    let mut stream = Stream {
        response: aggregator.get("/api/v1/stream?step=1s&last=60").await,
        pending: String::new(),
    };
    stream.next_series().await;

    // One event per series, with amounts past anything stored so far.
    let client = reqwest::Client::new();
    let post = |n: f64| {
        let now = EventTime::now().as_millis();
        let body = serde_json::json!([
            {"time": now, "amount": 1e6 + n},
            {"time": now, "amount": -1e6 - n},
        ]);
        let request = client.post(&event_api.url).json(&body);
        async move {
            let status = request.send().await.unwrap().status();
            assert!(status.is_success(), "POST answered {status}");
            (1e6 + n, -1e6 - n)
        }
    };
    // The first may come before the aggregator has reached both consumers;
    // then the tick shows it, within 30 s.
    let first = post(1.0).await;
    assert!(
        stream.shows(first, Duration::from_secs(40)).await.is_some(),
        "the stream never showed the first events"
    );
    let second = post(2.0).await;
    let shown = stream.shows(second, Duration::from_secs(5)).await;
    assert!(
        shown.is_some(),
        "the stream waited for its 30 s tick: the consumers' word did not wake it"
    );

    // A restarted consumer is heard again: the aggregator connects to the
    // new one within seconds, and shows what it stored before then as soon
    // as it connects. Only a low event, so that consumer-high's word cannot
    // explain a fresh chart.
    let extra = ["--batch-max-age", "20ms"];
    let config = common::consumer_low_config(&brokers, &influx, &extra);
    let low = low.restart(|l, s| consumer_low::run(config, l, s)).await;
    let third = -1e6 - 3.0;
    let body = serde_json::json!([{"time": EventTime::now().as_millis(), "amount": third}]);
    let status = client
        .post(&event_api.url)
        .json(&body)
        .send()
        .await
        .unwrap()
        .status();
    assert!(status.is_success(), "POST answered {status}");
    let stored = eventually(Duration::from_secs(30), || async {
        low.metric("events_written_total").await >= 1.0
    })
    .await;
    assert!(stored, "the restarted consumer-low never stored the event");
    let shown = stream
        .shows((f64::MIN, third), Duration::from_secs(10))
        .await;
    assert!(
        shown.is_some(),
        "the stream waited for its 30 s tick: the restarted consumer was not heard"
    );
    for service in [aggregator, low, high, event_api] {
        service.stop().await;
    }
}
