//! The Kafka side's flags: where the brokers are, how producers write and
//! how a consumer reads, batches and retries. Each is also read from its
//! environment variable (the Go version's names keep working).

use std::time::Duration;

use crate::consume::rebuild::ReplayFrom;
use clap::builder::BoolishValueParser;
use clap::{ArgAction, Args};
use streamproc_event::{names, Watermark, WatermarkError};
use streamproc_kit::config::EventBoundsArgs;

/// How to reach Kafka and which topic carries the events.
#[derive(Debug, Clone, Args)]
pub struct KafkaArgs {
    /// Comma-separated bootstrap brokers (host:port,…). Overrides
    /// KAFKA_HOST/KAFKA_PORT when set.
    #[arg(long, env = "KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,

    /// Broker host, used when KAFKA_BROKERS is not set.
    #[arg(long, env = "KAFKA_HOST", default_value = "127.0.0.1")]
    pub kafka_host: String,

    /// Broker port, used when KAFKA_BROKERS is not set.
    #[arg(long, env = "KAFKA_PORT", default_value_t = 9092)]
    pub kafka_port: u16,

    /// Topic that carries the events.
    #[arg(long, env = "KAFKA_TOPIC", default_value = names::EVENTS_TOPIC)]
    pub kafka_topic: String,

    #[command(flatten)]
    pub producer: ProducerArgs,
}

impl KafkaArgs {
    pub fn bootstrap_servers(&self) -> String {
        match &self.kafka_brokers {
            Some(brokers) if !brokers.trim().is_empty() => brokers.trim().to_owned(),
            _ => format!("{}:{}", self.kafka_host, self.kafka_port),
        }
    }
}

/// How a consumer service reads, batches and retries.
#[derive(Debug, Clone, Args)]
pub struct ConsumerArgs {
    /// Consumer group [default: streamproc-<service name>]. Instances of one
    /// service share a group and split the partitions.
    #[arg(long, env = "KAFKA_GROUP_ID")]
    pub kafka_group_id: Option<String>,

    /// Topic for records that are not valid events (or that the store refused).
    #[arg(long, env = "KAFKA_DLQ_TOPIC", default_value = names::DEAD_LETTER_TOPIC)]
    pub kafka_dlq_topic: String,

    /// Amounts above it go to consumer-high (TimescaleDB), the rest, the
    /// watermark included, to consumer-low (InfluxDB).
    #[arg(long, env = "WATERMARK", default_value_t = Watermark::DEFAULT.value(), value_parser = parse_watermark)]
    pub watermark: f64,

    /// Most records in one batch. Batches are only this large when a
    /// backlog waits; then a larger batch spreads the write's and the
    /// commit's round trips over more records (draining 100 000 records
    /// here: consumer-high 25 500/s at 1 000, 38 200/s at 5 000).
    #[arg(long, env = "BATCH_MAX_EVENTS", default_value_t = 5000)]
    pub batch_max_events: usize,

    /// Longest a batch keeps gathering records that arrive after its first.
    /// A batch is written as soon as no further record is waiting, so this
    /// bounds batching under a steady trickle, never an idle pipeline.
    #[arg(long, env = "BATCH_MAX_AGE", default_value = "100ms", value_parser = humantime::parse_duration)]
    pub batch_max_age: Duration,

    /// Longest the broker may hold a fetch that finds no new records
    /// (librdkafka's `fetch.wait.max.ms`). tansu 0.6.0 holds every fetch for
    /// this long even when records arrive meanwhile, so it bounds freshness
    /// there; Apache Kafka answers as soon as records arrive. Each idle
    /// consumer asks this often: at 25 ms two consumers cost tansu about a
    /// third of a core (10 ms: 57%, 500 ms: 3%).
    #[arg(long, env = "FETCH_WAIT_MAX", default_value = "25ms", value_parser = humantime::parse_duration)]
    pub fetch_wait_max: Duration,

    /// Longest wait between two tries of a failed sink write.
    #[arg(long, env = "RETRY_MAX", default_value = "30s", value_parser = humantime::parse_duration)]
    pub retry_max: Duration,

    /// On SIGTERM, how long to keep retrying the write of the batch in hand.
    #[arg(long, env = "DRAIN_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,

    /// How long the consumer may fail to store the batch in hand before
    /// `/readyz` reports it stalled (store refusing writes, disk full…).
    #[arg(long, env = "STALL_AFTER", default_value = "30s", value_parser = humantime::parse_duration)]
    pub stall_after: Duration,

    #[command(flatten)]
    pub bounds: EventBoundsArgs,

    /// Instead of consuming: replay the topic into this consumer's store
    /// from `beginning`, Unix ms, an RFC 3339 time or `now-<duration>` (the
    /// time the records reached Kafka), up to where the topic ends when it
    /// starts; then print what it did and exit. The consumer group is not
    /// touched, so the running consumers go on meanwhile, and the store
    /// keeps one copy per event id. A flag only, never an environment
    /// variable, so that no restart rebuilds by accident.
    #[arg(long, value_parser = ReplayFrom::parse)]
    pub rebuild_from: Option<ReplayFrom>,
}

fn parse_watermark(s: &str) -> Result<f64, WatermarkError> {
    s.parse::<Watermark>().map(Watermark::value)
}

/// How this service's producers write to Kafka.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct ProducerArgs {
    /// Use Kafka's idempotent producer (`enable.idempotence`): the broker
    /// drops the copies that librdkafka's own retries would otherwise write.
    /// Off by default because the defaults point at the local tansu 0.6.0
    /// broker, whose SQLite storage panics on an idempotent producer's first
    /// produce after a broker restart (and refuses every request from then
    /// on). Turn it on against Apache Kafka (the Helm chart does). Off, the
    /// producer still waits for acks=all and retries until the delivery
    /// timeout, so nothing acknowledged is lost; a retry may write a record
    /// twice, which is harmless: every record carries its event's id and
    /// both stores keep one copy per id.
    #[arg(
        long,
        env = "KAFKA_IDEMPOTENCE",
        default_value_t = false,
        action = ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new(),
    )]
    pub kafka_idempotence: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        kafka: KafkaArgs,
    }

    #[test]
    fn brokers_list_wins_over_host_and_port() {
        let cli = Cli::parse_from(["t", "--kafka-host", "k", "--kafka-port", "1"]);
        assert_eq!(cli.kafka.bootstrap_servers(), "k:1");
        let cli = Cli::parse_from(["t", "--kafka-brokers", "a:1,b:2", "--kafka-host", "k"]);
        assert_eq!(cli.kafka.bootstrap_servers(), "a:1,b:2");
    }

    #[test]
    fn idempotence_is_off_unless_asked_for() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("t").chain(args.iter().copied()))
                .map(|cli| cli.kafka.producer.kafka_idempotence)
        };
        assert!(!parse(&[]).unwrap());
        assert!(parse(&["--kafka-idempotence"]).unwrap());
        assert!(parse(&["--kafka-idempotence", "true"]).unwrap());
        assert!(!parse(&["--kafka-idempotence=false"]).unwrap());
        assert!(parse(&["--kafka-idempotence=maybe"]).is_err());
    }
}
