//! The ingest baseline: event-api's own Kafka producer, fed straight from
//! memory. What event-api adds (HTTP, parsing, validation) is exactly the
//! difference between this and its figure.

use std::time::Duration;

use anyhow::{bail, Context};
use futures_util::stream::{FuturesUnordered, StreamExt};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::future_producer::DeliveryFuture;
use rdkafka::producer::FutureRecord;
use streamproc_event::Event;
use streamproc_kafka::config::ProducerArgs;
use streamproc_kafka::producer::{self, ReliableProducer};

use crate::cpu::Watch;
use crate::events::{self, Side};

/// event-api's default KAFKA_DELIVERY_TIMEOUT. It only bounds how long a
/// failing delivery is retried, so it does not change the rate.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Bootstrap brokers, host:port[,host:port…].
    #[arg(long)]
    brokers: String,
    #[arg(long)]
    topic: String,
    /// Events to produce, timed.
    #[arg(long)]
    events: usize,
    /// Most events sent and not yet acknowledged. Match it to what event-api
    /// has in flight in the run compared: its connections × events per
    /// request.
    #[arg(long)]
    in_flight: usize,
    /// Events produced and acknowledged before the timing starts, so that
    /// connections and topic metadata are ready, as event-api's are after
    /// its warm-up.
    #[arg(long, default_value_t = 1_000)]
    warmup: usize,
    /// Partitions of the topic when it has to be created; event-api's
    /// default KAFKA_PARTITIONS.
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    /// event-api's idempotence switch, the same flag and default.
    #[command(flatten)]
    producer: ProducerArgs,
}

pub async fn run(args: Args, watch: &Watch) -> anyhow::Result<serde_json::Value> {
    if args.in_flight == 0 {
        bail!("--in-flight must be at least 1");
    }
    producer::ensure_topic(
        &args.brokers,
        &args.topic,
        args.partitions,
        1,
        Duration::from_secs(10),
    )
    .await?;
    // The very function event-api builds its producer with: acks=all,
    // linger.ms 5, the same idempotence default, IPv4 brokers.
    let (producer, _state) = producer::producer(&args.brokers, DELIVERY_TIMEOUT, args.producer)?;

    let run = events::run_id();
    let warmup = events::generate(&format!("{run}w"), args.warmup, Side::Both)?;
    produce(&producer, &args.topic, &warmup, args.in_flight)
        .await
        .context("warm-up")?;
    let measured = events::generate(&run, args.events, Side::Both)?;
    let stopwatch = watch.start();
    produce(&producer, &args.topic, &measured, args.in_flight).await?;
    let timed = stopwatch.stop();

    Ok(crate::report(
        "produce",
        "events/s",
        args.events,
        timed,
        serde_json::json!({
            "in_flight": args.in_flight,
            "acks": "all",
            "linger_ms": 5,
            "idempotence": args.producer.kafka_idempotence,
            "key": "event id",
        }),
    ))
}

/// Sends every event as event-api does (key: the id, payload: the canonical
/// JSON) and waits for all acknowledgements, never more than `in_flight`
/// outstanding: a new send only after the oldest slot's ack came back.
async fn produce(
    producer: &ReliableProducer,
    topic: &str,
    events: &[Event],
    in_flight: usize,
) -> anyhow::Result<()> {
    let mut pending: FuturesUnordered<DeliveryFuture> = FuturesUnordered::new();
    for event in events {
        while pending.len() >= in_flight {
            acknowledged(pending.next().await)?;
        }
        let payload = event.to_json_bytes();
        loop {
            let record = FutureRecord::to(topic)
                .key(event.id.as_str())
                .payload(&payload);
            match producer.send_result(record) {
                Ok(delivery) => {
                    pending.push(delivery);
                    break;
                }
                // librdkafka's own queue is full (only with an in-flight
                // bound above queue.buffering.max.messages): wait for one.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _))
                    if !pending.is_empty() =>
                {
                    acknowledged(pending.next().await)?;
                }
                Err((error, _)) => bail!("producing to {topic}: {error}"),
            }
        }
    }
    while let Some(delivery) = pending.next().await {
        acknowledged(Some(delivery))?;
    }
    Ok(())
}

type Delivered = Option<<DeliveryFuture as std::future::Future>::Output>;

fn acknowledged(delivery: Delivered) -> anyhow::Result<()> {
    match delivery {
        Some(Ok(Ok(_))) => Ok(()),
        Some(Ok(Err((error, _)))) => bail!("a delivery failed: {error}"),
        Some(Err(_)) => bail!("the producer dropped a delivery"),
        None => bail!("waited for an acknowledgement with none outstanding"),
    }
}
