use std::time::Duration;

use clap::Parser;
use streamproc_kafka::config::KafkaArgs;
use streamproc_kit::auth::ApiTokenArgs;
use streamproc_kit::config::{EventBoundsArgs, ServeArgs};

/// Defaults of the bounds below, which the OpenAPI document states too.
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
pub const DEFAULT_MAX_IN_FLIGHT_EVENTS: u32 = 100_000;
pub const DEFAULT_MAX_EVENTS_PER_REQUEST: u32 = 10_000;
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: u32 = 64;
pub const DEFAULT_BODY_READ_TIMEOUT: &str = "10s";
pub const DEFAULT_REQUEST_TIMEOUT: &str = "30s";

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
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,

    /// Events that may wait for Kafka at once, over all requests; past it
    /// requests are answered 429 rather than queued.
    #[arg(long, env = "MAX_IN_FLIGHT_EVENTS", default_value_t = DEFAULT_MAX_IN_FLIGHT_EVENTS)]
    pub max_in_flight_events: u32,

    /// Most events one request may carry, counted while the body is parsed;
    /// past it the request is answered 413.
    #[arg(long, env = "MAX_EVENTS_PER_REQUEST", default_value_t = DEFAULT_MAX_EVENTS_PER_REQUEST, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_events_per_request: u32,

    #[command(flatten)]
    pub bounds: EventBoundsArgs,

    /// Requests to the ingest paths served at once; past it requests are
    /// answered 503 at once rather than queued. Bounds memory (each may
    /// hold up to MAX_BODY_BYTES) and keeps probes answered.
    #[arg(long, env = "MAX_CONCURRENT_REQUESTS", default_value_t = DEFAULT_MAX_CONCURRENT_REQUESTS, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_requests: u32,

    /// Longest a client may take to send its whole request body; past it the
    /// request is answered 408, so a slow sender cannot hold a slot forever.
    #[arg(long, env = "BODY_READ_TIMEOUT", default_value = DEFAULT_BODY_READ_TIMEOUT, value_parser = humantime::parse_duration)]
    pub body_read_timeout: Duration,

    /// Longest an ingest request may take in all (body, validation, Kafka);
    /// past it the request is answered 503. Keep it above BODY_READ_TIMEOUT
    /// plus KAFKA_DELIVERY_TIMEOUT, so that it is a backstop only.
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = DEFAULT_REQUEST_TIMEOUT, value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,

    /// When set, every ingest request (POST / and POST /v1/events) must
    /// carry `Authorization: Bearer <token>`; others are answered 401.
    /// Probes, metrics and /openapi.json stay open.
    #[command(flatten)]
    pub token: ApiTokenArgs,
}
