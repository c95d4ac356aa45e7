use std::time::Duration;

use clap::Parser;
use streamproc_kit::auth::ApiTokenArgs;
use streamproc_kit::config::ServeArgs;

/// event-producer: generates events at a steady rate and POSTs them to
/// event-api in batches, retrying failed sends.
#[derive(Debug, Clone, Parser)]
#[command(version, about)]
pub struct Config {
    /// Health and metrics server (HOST, PORT; default port 9999). DISABLE / -x:
    /// generate events but send nothing.
    #[command(flatten)]
    pub serve: ServeArgs,

    /// Full URL to POST events to. Overrides API_HOST/API_PORT.
    #[arg(long, env = "API_URL")]
    pub url: Option<String>,

    /// event-api host, used when API_URL is not set.
    #[arg(long, env = "API_HOST", default_value = "127.0.0.1")]
    pub api_host: String,

    /// event-api port, used when API_URL is not set.
    #[arg(long, env = "API_PORT", default_value_t = streamproc_event::names::EVENT_API_PORT)]
    pub api_port: u16,

    /// event-api's ingest token (its API_TOKEN), sent as
    /// `Authorization: Bearer <token>` with every batch.
    #[command(flatten)]
    pub token: ApiTokenArgs,

    /// Events generated per second.
    #[arg(long, env = "RATE", default_value_t = 1.0, value_parser = positive_rate)]
    pub rate: f64,

    /// How often buffered events are sent, e.g. "2s" or "250ms".
    #[arg(long, env = "SEND_INTERVAL", default_value = "2s", value_parser = humantime::parse_duration)]
    pub interval: Duration,

    /// Smallest generated amount (inclusive).
    #[arg(
        long,
        env = "AMOUNT_MIN",
        default_value_t = 0.0,
        allow_negative_numbers = true
    )]
    pub amount_min: f64,

    /// Largest generated amount (exclusive).
    #[arg(
        long,
        env = "AMOUNT_MAX",
        default_value_t = 10.0,
        allow_negative_numbers = true
    )]
    pub amount_max: f64,

    /// Send one JSON event per line (Content-Type application/text) instead
    /// of a JSON array.
    #[arg(long, env = "PLAIN_TEXT")]
    pub plain_text: bool,

    /// Seed for the amounts, for a reproducible sequence. Event ids stay
    /// unique per run, so a rerun is stored again rather than deduplicated.
    #[arg(long, env = "SEED")]
    pub seed: Option<u64>,

    /// Stop after generating this many events (and sending them).
    #[arg(long, env = "COUNT")]
    pub count: Option<u64>,

    /// Stop generating after this long, e.g. "1m" (then send what is left).
    #[arg(long, env = "DURATION", value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,

    /// Most events kept while event-api is unreachable; past it the oldest
    /// are dropped, counted and logged.
    #[arg(long, env = "MAX_BUFFERED_EVENTS", default_value_t = 10_000)]
    pub max_buffered_events: usize,

    /// Most events in one request.
    #[arg(long, env = "MAX_BATCH_EVENTS", default_value_t = 5_000)]
    pub max_batch_events: usize,

    /// Time limit for one request.
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,

    /// On stop, how long to keep trying to send what is still buffered.
    #[arg(long, env = "DRAIN_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,

    /// Print every event event-api acknowledged as a JSON line on stdout.
    #[arg(long, env = "ECHO")]
    pub echo: bool,
}

impl Config {
    pub fn target_url(&self) -> String {
        match &self.url {
            Some(url) => url.clone(),
            None => format!("http://{}:{}/v1/events", self.api_host, self.api_port),
        }
    }

    /// Checks what clap cannot check one flag at a time.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.amount_min.is_finite()
                && self.amount_max.is_finite()
                && self.amount_min < self.amount_max,
            "AMOUNT_MIN ({}) must be below AMOUNT_MAX ({})",
            self.amount_min,
            self.amount_max
        );
        anyhow::ensure!(
            self.max_batch_events > 0,
            "MAX_BATCH_EVENTS must be at least 1"
        );
        anyhow::ensure!(
            self.max_buffered_events >= self.max_batch_events,
            "MAX_BUFFERED_EVENTS must be at least MAX_BATCH_EVENTS"
        );
        anyhow::ensure!(!self.interval.is_zero(), "SEND_INTERVAL must be above zero");
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a positive number of events per second")]
struct NotARate(String);

fn positive_rate(s: &str) -> Result<f64, NotARate> {
    match s.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(NotARate(s.to_owned())),
    }
}
