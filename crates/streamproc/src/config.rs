//! Configuration shared by the services: every flag is also read from an
//! environment variable, and the Go version's variable names keep working.

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio::net::TcpListener;

use crate::consume::ConsumerSettings;
use crate::event::{EventBounds, AMOUNT_LIMIT_CEILING};
use crate::kafka::ProducerArgs;
use crate::route::{Route, Watermark};

/// What an event may say: read by event-api, which answers 400 outside
/// these bounds, and by the consumers, which dead-letter records outside
/// them (a topic can be written by anyone). Give all three the same values.
#[derive(Debug, Clone, Args)]
pub struct EventBoundsArgs {
    /// Oldest event time accepted, counted back from now.
    #[arg(long, env = "EVENT_MAX_AGE", default_value = "10years", value_parser = humantime::parse_duration)]
    pub event_max_age: Duration,

    /// Latest event time accepted, counted ahead of now.
    #[arg(long, env = "EVENT_MAX_AHEAD", default_value = "1day", value_parser = humantime::parse_duration)]
    pub event_max_ahead: Duration,

    /// Largest |amount| accepted (at most 1e300).
    #[arg(long, env = "EVENT_MAX_AMOUNT", default_value_t = EventBounds::DEFAULT.max_amount, value_parser = parse_amount_limit)]
    pub event_max_amount: f64,
}

impl EventBoundsArgs {
    pub fn bounds(&self) -> EventBounds {
        EventBounds {
            max_age: self.event_max_age,
            max_ahead: self.event_max_ahead,
            max_amount: self.event_max_amount,
        }
    }
}

fn parse_amount_limit(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(limit) if limit > 0.0 && limit <= AMOUNT_LIMIT_CEILING => Ok(limit),
        _ => Err(format!(
            "must be a number above 0 and at most {AMOUNT_LIMIT_CEILING:e}"
        )),
    }
}

/// Where a service listens and whether its I/O is switched off.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on. Use 0.0.0.0 inside a container.
    #[arg(long, env = "HOST", default_value = "127.0.0.1")]
    pub host: String,

    /// Port to listen on [default: the service's own: event-api 9998,
    /// consumer-high 9996, consumer-low 9997, event-producer 9999].
    #[arg(long, env = "PORT")]
    pub port: Option<u16>,

    /// Turn off this service's I/O (Kafka, databases, outgoing HTTP) so that a
    /// copy running elsewhere, for example on a developer's machine, does the
    /// work instead. Probes and metrics still answer.
    #[arg(short = 'x', long = "disable", env = "DISABLE")]
    pub disable: bool,
}

impl ServeArgs {
    /// Binds the listen address (the service's own port unless PORT is set).
    /// HOST may be a name such as `localhost` as well as an IP address.
    pub async fn bind(&self, default_port: u16) -> anyhow::Result<TcpListener> {
        let port = self.port.unwrap_or(default_port);
        TcpListener::bind((self.host.as_str(), port))
            .await
            .with_context(|| format!("cannot listen on {}:{port}", self.host))
    }
}

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
    #[arg(long, env = "KAFKA_TOPIC", default_value = "events")]
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
    #[arg(long, env = "KAFKA_DLQ_TOPIC", default_value = "events.dlq")]
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
}

fn parse_watermark(s: &str) -> Result<f64, String> {
    s.parse::<Watermark>().map(Watermark::value)
}

impl ConsumerArgs {
    pub fn settings(&self, kafka: &KafkaArgs, route: Route, service: &str) -> ConsumerSettings {
        ConsumerSettings {
            brokers: kafka.bootstrap_servers(),
            topic: kafka.kafka_topic.clone(),
            producer: kafka.producer,
            group_id: self
                .kafka_group_id
                .clone()
                .unwrap_or_else(|| format!("streamproc-{service}")),
            dead_letter_topic: self.kafka_dlq_topic.clone(),
            route,
            watermark: Watermark::new(self.watermark).expect("validated by parse_watermark"),
            bounds: self.bounds.bounds(),
            batch_max_events: self.batch_max_events.max(1),
            batch_max_age: self.batch_max_age,
            fetch_wait_max: self.fetch_wait_max,
            retry_initial: Duration::from_millis(200),
            retry_max: self.retry_max,
            drain_timeout: self.drain_timeout,
            stall_after: self.stall_after,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
        #[command(flatten)]
        kafka: KafkaArgs,
    }

    #[derive(Parser)]
    struct BoundsCli {
        #[command(flatten)]
        bounds: EventBoundsArgs,
    }

    #[test]
    fn bounds_defaults_are_the_event_models_and_limits_are_checked() {
        let cli = BoundsCli::parse_from(["t"]);
        assert_eq!(cli.bounds.bounds(), EventBounds::DEFAULT);
        for bad in ["0", "-1", "inf", "NaN", "1e301", "x"] {
            assert!(
                BoundsCli::try_parse_from(["t", "--event-max-amount", bad]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn brokers_list_wins_over_host_and_port() {
        let cli = Cli::parse_from(["t", "--kafka-host", "k", "--kafka-port", "1"]);
        assert_eq!(cli.kafka.bootstrap_servers(), "k:1");
        let cli = Cli::parse_from(["t", "--kafka-brokers", "a:1,b:2", "--kafka-host", "k"]);
        assert_eq!(cli.kafka.bootstrap_servers(), "a:1,b:2");
    }

    #[tokio::test]
    async fn binds_names_and_the_given_port() {
        let cli = Cli::parse_from(["t", "-x", "--host", "localhost", "--port", "0"]);
        assert!(cli.serve.disable);
        let listener = cli.serve.bind(9998).await.unwrap();
        assert!(listener.local_addr().unwrap().ip().is_loopback());
        let cli = Cli::parse_from(["t", "--host", "no such host."]);
        let err = cli.serve.bind(0).await.unwrap_err();
        assert!(err.to_string().contains("no such host."), "{err}");
    }
}
