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
    #[arg(long, default_value_t = 10)]
    fetch_wait_max_ms: u32,
    /// Give up when the records have not all arrived by then.
    #[arg(long, default_value_t = 300)]
    timeout_seconds: u64,
}

pub async fn run(args: Args, watch: Watch) -> anyhow::Result<serde_json::Value> {
    // librdkafka's poll blocks its thread; nothing else runs meanwhile.
    tokio::task::spawn_blocking(move || read(&args, &watch)).await?
}

fn read(args: &Args, watch: &Watch) -> anyhow::Result<serde_json::Value> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .set("broker.address.family", "v4")
        // Required by librdkafka's consumer; with assign() and no commits
        // the group is never joined, so no rebalance is timed.
        .set("group.id", "streamproc-native-baseline")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // The fetch settings the consumers run with (see
        // streamproc::consume), so the baseline is the broker's rate for
        // their kind of fetch.
        .set("fetch.wait.max.ms", args.fetch_wait_max_ms.to_string())
        .set("queued.max.messages.kbytes", "16384")
        .create()
        .context("creating the Kafka consumer")?;

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
    // Timed from the assignment, when librdkafka starts fetching, not from
    // the first record: a broker that answers the first fetch with most of
    // the topic (one large batch per partition) would otherwise be timed
    // reading from librdkafka's local queue.
    let stopwatch = watch.start();

    let deadline = Instant::now() + Duration::from_secs(args.timeout_seconds);
    let mut seen = 0;
    while seen < args.expect {
        if Instant::now() > deadline {
            bail!("read {seen} of {} records before the timeout", args.expect);
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(_record)) => seen += 1,
            Some(Err(error)) => bail!("reading {}: {error}", args.topic),
            None => {}
        }
    }
    let timed = stopwatch.stop();
    Ok(crate::report(
        "consume",
        "records/s",
        args.expect,
        timed,
        serde_json::json!({
            "partitions": partitions,
            "fetch_wait_max_ms": args.fetch_wait_max_ms,
            "client": "librdkafka BaseConsumer, assigned, no commits",
        }),
    ))
}
