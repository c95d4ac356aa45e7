//! What the end-to-end tests start the same way.

// Each test file is its own crate and uses only some of these.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;

use clap::Parser;
use testkit::{InProcess, InfluxDb, Postgres, Tansu};

/// Runs web-ui's browser test `script` (a path under services/web-ui) in
/// node, in Debian's Chromium, with `args`; asserts that it passes and
/// prints `summary`. Returns the folder its screenshots went to.
pub async fn run_browser_test(script: &str, args: &[&str], summary: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let screenshots = root.join("target/screenshots");
    let output = tokio::process::Command::new("node")
        .current_dir(root.join("services/web-ui"))
        .arg(script)
        .args(args)
        .arg("--screenshots")
        .arg(&screenshots)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .expect("node runs (scripts/install.sh installs it and the page's packages)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{script} failed");
    assert!(stdout.contains(summary), "{stdout}");
    screenshots
}

/// consumer-high and consumer-low in this process, reading `brokers` into
/// `postgres` and `influx`, with `extra` flags for both.
pub async fn start_consumers(
    brokers: &str,
    postgres: &Postgres,
    influx: &InfluxDb,
    extra: &[&str],
) -> (InProcess, InProcess) {
    let store = ["--postgres-url", &postgres.url()];
    let config: consumer_high::Config = consumer_config("consumer-high", store, brokers, extra);
    let high = InProcess::spawn(|l, s| consumer_high::run(config, l, s)).await;
    let config = consumer_low_config(brokers, influx, extra);
    let low = InProcess::spawn(|l, s| consumer_low::run(config, l, s)).await;
    (high, low)
}

/// consumer-low's configuration in [`start_consumers`], for a test that
/// restarts it.
pub fn consumer_low_config(
    brokers: &str,
    influx: &InfluxDb,
    extra: &[&str],
) -> consumer_low::Config {
    let store = ["--influxdb-host", &influx.url()];
    consumer_config("consumer-low", store, brokers, extra)
}

/// A consumer's flags: its store's (`store`: flag and value), the brokers,
/// then `extra`.
fn consumer_config<C: Parser>(name: &str, store: [&str; 2], brokers: &str, extra: &[&str]) -> C {
    let flags = [name, store[0], store[1], "--kafka-brokers", brokers];
    C::try_parse_from(flags.iter().chain(extra)).unwrap()
}

/// event-api in this process, writing to `brokers`, with `extra` flags.
pub async fn start_event_api(brokers: &str, extra: &[&str]) -> InProcess {
    let config = event_api::Config::try_parse_from(
        ["event-api", "--kafka-brokers", brokers]
            .iter()
            .chain(extra),
    )
    .unwrap();
    InProcess::spawn(|l, s| event_api::run(config, l, s)).await
}

/// The aggregator (reading both stores, watching `brokers` and the
/// event-api at `api_url`) with `extra` flags, and web-ui in front of it.
/// Given `consumers` (high, low), the aggregator also probes them and
/// hears what they store, as under scripts/local.sh; without, it judges
/// them from Kafka alone and its streams tick.
pub async fn start_read_side(
    brokers: &str,
    postgres: &Postgres,
    influx: &InfluxDb,
    api_url: &str,
    consumers: Option<(&InProcess, &InProcess)>,
    extra: &[&str],
) -> (InProcess, InProcess) {
    let (postgres_url, influx_url) = (postgres.url(), influx.url());
    let mut flags = vec![
        "aggregator",
        "--postgres-url",
        &postgres_url,
        "--influxdb-host",
        &influx_url,
        "--kafka-brokers",
        brokers,
        "--api-url",
        api_url,
    ];
    if let Some((high, low)) = consumers {
        flags.extend([
            "--consumer-high-url",
            &high.url,
            "--consumer-low-url",
            &low.url,
        ]);
    }
    let config = aggregator::Config::try_parse_from(flags.iter().chain(extra)).unwrap();
    let aggregator = InProcess::spawn(|l, s| aggregator::run(config, l, s)).await;
    let config =
        web_ui::Config::try_parse_from(["web-ui", "--aggregator-url", &aggregator.url]).unwrap();
    let web_ui = InProcess::spawn(|l, s| web_ui::run(config, l, s)).await;
    (aggregator, web_ui)
}

/// Every service in this process against a fresh broker (topic `events`,
/// 3 partitions) and fresh stores. Each stops when dropped: a test binds
/// every field it destructures (`influx: _influx`, never `..`), or the
/// ones left out stop at once.
pub struct Pipeline {
    pub broker: Tansu,
    pub postgres: Postgres,
    pub influx: InfluxDb,
    pub event_api: InProcess,
    pub high: InProcess,
    pub low: InProcess,
    pub aggregator: InProcess,
    pub web_ui: InProcess,
}

/// The whole pipeline: event-api with `event_api_flags`, both consumers
/// writing batches within 20 ms, the aggregator and web-ui with their
/// defaults.
pub async fn start_pipeline(event_api_flags: &[&str]) -> Pipeline {
    let broker = Tansu::start();
    broker.create_topic("events", 3).await;
    let postgres = Postgres::start();
    let influx = InfluxDb::start();
    let brokers = broker.brokers();
    let event_api = start_event_api(&brokers, event_api_flags).await;
    let (high, low) =
        start_consumers(&brokers, &postgres, &influx, &["--batch-max-age", "20ms"]).await;
    let (aggregator, web_ui) =
        start_read_side(&brokers, &postgres, &influx, &event_api.url, None, &[]).await;
    Pipeline {
        broker,
        postgres,
        influx,
        event_api,
        high,
        low,
        aggregator,
        web_ui,
    }
}
