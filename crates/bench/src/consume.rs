//! The read baseline: librdkafka reading a full topic and doing nothing with
//! the records. No consumer can drain the topic faster on this broker.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::cpu::Watch;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Bootstrap brokers, host:port[,host:port…].
    #[arg(long)]
    brokers: String,
    #[arg(long)]
    topic: String,
    /// Records to read: the number on the topic.
    #[arg(long)]
    expect: usize,
    /// librdkafka's fetch.wait.max.ms; the consumers' default FETCH_WAIT_MAX.
    #[arg(long, default_value_t = 25)]
    fetch_wait_max_ms: u32,
    /// Any other librdkafka setting, KEY=VALUE (repeatable): to see what a
    /// setting changes, or `debug=fetch` to see where the time goes.
    #[arg(long = "set", value_parser = parse_setting)]
    settings: Vec<(String, String)>,
    /// Give up when the records have not all arrived by then.
    #[arg(long, default_value_t = 300)]
    timeout_seconds: u64,
}

pub async fn run(args: Args, watch: Watch) -> anyhow::Result<serde_json::Value> {
    // librdkafka's poll blocks its thread; nothing else runs meanwhile.
    tokio::task::spawn_blocking(move || read(&args, &watch)).await?
}

fn parse_setting(value: &str) -> anyhow::Result<(String, String)> {
    value
        .split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .with_context(|| format!("expected KEY=VALUE, got {value:?}"))
}

fn read(args: &Args, watch: &Watch) -> anyhow::Result<serde_json::Value> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &args.brokers)
        .set("broker.address.family", "v4")
        // Required by librdkafka's consumer; with assign() and no commits
        // the group is never joined, so no rebalance is timed.
        .set("group.id", "streamproc-native-baseline")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // The fetch settings the consumers run with (see
        // streamproc_kafka::consume), so the baseline is the broker's rate for
        // their kind of fetch.
        .set("fetch.wait.max.ms", args.fetch_wait_max_ms.to_string())
        .set("queued.max.messages.kbytes", "16384");
    for (key, value) in &args.settings {
        config.set(key, value);
    }
    let consumer: BaseConsumer = config.create().context("creating the Kafka consumer")?;

    let metadata = consumer
        .fetch_metadata(Some(&args.topic), Duration::from_secs(10))
        .with_context(|| format!("reading the metadata of {}", args.topic))?;
    let partitions = metadata
        .topics()
        .iter()
        .find(|t| t.name() == args.topic && t.error().is_none())
        .map(|t| t.partitions().len())
        .filter(|&n| n > 0)
        .with_context(|| format!("topic {} does not exist", args.topic))?;
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment.add_partition_offset(&args.topic, partition as i32, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let assigned = Instant::now();

    let deadline = assigned + Duration::from_secs(args.timeout_seconds);
    let mut stopwatch = None;
    let mut seen = 0;
    while seen < args.expect {
        if Instant::now() > deadline {
            bail!("read {seen} of {} records before the timeout", args.expect);
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(_record)) => {
                // Timed from the first record, as the consumers are timed
                // from their first stored event: the first fetch is left
                // out of both. The broker answers a fetch with up to 1 MB
                // per partition, so the topic must span many fetches for
                // the rate to be the broker's (bench_consume's does).
                stopwatch.get_or_insert_with(|| watch.start());
                seen += 1;
            }
            Some(Err(error)) => bail!("reading {}: {error}", args.topic),
            None => {}
        }
    }
    let from_assignment = assigned.elapsed();
    let timed = stopwatch.context("--expect 0: nothing to time")?.stop();
    let mut report = crate::report(
        "consume",
        "records/s",
        // The first record opened the clock: it is not part of the rate.
        args.expect - 1,
        timed,
        serde_json::json!({
            "partitions": partitions,
            "fetch_wait_max_ms": args.fetch_wait_max_ms,
            "client": "librdkafka BaseConsumer, assigned, no commits",
            "librdkafka": args.settings.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
        }),
    );
    // The first fetch included: how long a reader starting now would take.
    report["rate_from_assignment"] =
        serde_json::json!(args.expect as f64 / from_assignment.as_secs_f64());
    Ok(report)
}
