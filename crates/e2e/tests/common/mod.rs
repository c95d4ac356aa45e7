//! What both end-to-end tests start the same way.

use clap::Parser;
use testkit::{InProcess, InfluxDb, Postgres};

/// consumer-high and consumer-low in this process, reading `brokers` into
/// `postgres` and `influx`, with `extra` flags for both.
pub async fn start_consumers(
    brokers: &str,
    postgres: &Postgres,
    influx: &InfluxDb,
    extra: &[&str],
) -> (InProcess, InProcess) {
    let shared: Vec<&str> = ["--kafka-brokers", brokers]
        .iter()
        .chain(extra)
        .copied()
        .collect();
    let url = postgres.url();
    let config = consumer_high::Config::try_parse_from(
        ["consumer-high", "--postgres-url", &url]
            .iter()
            .chain(&shared),
    )
    .unwrap();
    let high = InProcess::spawn(|l, s| consumer_high::run(config, l, s)).await;
    let url = influx.url();
    let config = consumer_low::Config::try_parse_from(
        ["consumer-low", "--influxdb-host", &url]
            .iter()
            .chain(&shared),
    )
    .unwrap();
    let low = InProcess::spawn(|l, s| consumer_low::run(config, l, s)).await;
    (high, low)
}
