use std::time::Duration;

use clap::Parser;
use streamproc::config::{KafkaArgs, ServeArgs};

/// event-api: takes events over HTTP and writes them to Kafka.
#[derive(Debug, Clone, Parser)]
#[command(version, about)]
pub struct Config {
    #[command(flatten)]
    pub serve: ServeArgs,

    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// Partitions of the topic when event-api has to create it.
    #[arg(long, env = "KAFKA_PARTITIONS", default_value_t = 3)]
    pub kafka_partitions: i32,

    /// Replication factor of the topic when event-api has to create it.
    #[arg(long, env = "KAFKA_REPLICATION_FACTOR", default_value_t = 1)]
    pub kafka_replication_factor: i32,

    /// How long a request waits for Kafka to acknowledge all its events
    /// before it is answered 503.
    #[arg(long, env = "KAFKA_DELIVERY_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub kafka_delivery_timeout: Duration,

    /// Largest request body in bytes; larger ones are answered 413.
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Events that may wait for Kafka at once, over all requests; past it
    /// requests are answered 429 rather than queued.
    #[arg(long, env = "MAX_IN_FLIGHT_EVENTS", default_value_t = 100_000)]
    pub max_in_flight_events: u32,
}
