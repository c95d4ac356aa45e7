//! The producer binary against a real event-api and broker: a seeded run
//! sends exactly the events it reports, and a run that cannot deliver says
//! so in its exit status.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use clap::Parser;
use serde_json::Value;
use testkit::{read_topic, Tansu};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

async fn producer(args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_event-producer"))
        .args(["--port", "0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .await
        .expect("the producer runs")
}

/// id → canonical event, from NDJSON.
fn by_id<'a>(lines: impl Iterator<Item = &'a str>) -> BTreeMap<String, Value> {
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let event: Value = serde_json::from_str(l).unwrap();
            (event["id"].as_str().unwrap().to_owned(), event)
        })
        .collect()
}

#[tokio::test]
async fn a_seeded_run_sends_exactly_what_it_reports() {
    let broker = Tansu::start();
    broker.create_topic("events", 3).await;
    let config =
        event_api::Config::try_parse_from(["event-api", "--kafka-brokers", &broker.brokers()])
            .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/events", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let api = tokio::spawn(event_api::run(config, listener, shutdown.clone()));

    let args = [
        "--url",
        &url,
        "--seed",
        "42",
        "--count",
        "60",
        "--rate",
        "300",
        "--interval",
        "50ms",
        "--echo",
    ];
    let output = producer(&args).await;
    assert!(
        output.status.success(),
        "producer failed: {:?}",
        output.status
    );
    let reported = by_id(std::str::from_utf8(&output.stdout).unwrap().lines());
    assert_eq!(reported.len(), 60);

    let records = read_topic(
        &broker.brokers(),
        "events",
        60,
        Duration::from_secs(20),
        Duration::from_millis(500),
    )
    .await;
    let on_topic = by_id(records.iter().map(|r| r.payload.as_str()));
    assert_eq!(
        on_topic, reported,
        "the topic holds exactly the reported events"
    );

    // The same seed gives the same amounts, in order, with fresh ids.
    let again = producer(&args).await;
    let amounts = |stdout: &[u8]| -> Vec<f64> {
        std::str::from_utf8(stdout)
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["amount"]
                    .as_f64()
                    .unwrap()
            })
            .collect()
    };
    assert_eq!(amounts(&again.stdout), amounts(&output.stdout));
    assert!(by_id(std::str::from_utf8(&again.stdout).unwrap().lines())
        .keys()
        .all(|id| !reported.contains_key(id)));

    shutdown.cancel();
    api.await.unwrap().unwrap();
}

#[tokio::test]
async fn an_unreachable_api_bounds_the_buffer_and_fails_the_run() {
    let url = format!("http://127.0.0.1:{}/v1/events", testkit::free_port());
    let args = [
        "--url",
        &url,
        "--count",
        "50",
        "--rate",
        "1000",
        "--interval",
        "20ms",
        "--max-buffered-events",
        "10",
        "--max-batch-events",
        "5",
        "--drain-timeout",
        "300ms",
        "--echo",
    ];
    let output = producer(&args).await;
    assert!(
        !output.status.success(),
        "a run that lost events must not exit 0"
    );
    assert!(
        output.stdout.is_empty(),
        "nothing was acknowledged, nothing is reported"
    );
}
