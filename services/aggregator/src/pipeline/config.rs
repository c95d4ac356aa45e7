//! The settings of the pipeline watch: where the stages are, how often they
//! are probed, and when a stage counts as degraded or down. Kafka's and
//! event-api's variables are the names the other services read, so one
//! environment serves them all.

use std::time::Duration;
use streamproc_event::names;

use clap::builder::BoolishValueParser;
use clap::{ArgAction, Args};
use streamproc_kafka::config::KafkaArgs;

/// The default consumer groups: each consumer's `streamproc-<service>`.

#[derive(Debug, Clone, Args)]
pub struct PipelineArgs {
    /// Watch the pipeline's health (/api/v1/pipeline). Off, the aggregator
    /// neither reaches Kafka nor probes event-api and its stores beyond the
    /// queries it answers (a benchmark of those queries, or a deployment
    /// that may not reach Kafka).
    #[arg(
        long,
        env = "PIPELINE_WATCH",
        default_value_t = true,
        action = ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new(),
    )]
    pub pipeline_watch: bool,

    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// Dead-letter topic of both consumers.
    #[arg(long, env = "KAFKA_DLQ_TOPIC", default_value = names::DEAD_LETTER_TOPIC)]
    pub kafka_dlq_topic: String,

    /// consumer-high's consumer group (its KAFKA_GROUP_ID).
    #[arg(long, env = "CONSUMER_HIGH_GROUP_ID", default_value_t = names::consumer_group(names::CONSUMER_HIGH))]
    pub consumer_high_group: String,

    /// consumer-low's consumer group (its KAFKA_GROUP_ID).
    #[arg(long, env = "CONSUMER_LOW_GROUP_ID", default_value_t = names::consumer_group(names::CONSUMER_LOW))]
    pub consumer_low_group: String,

    /// event-api's URL. Overrides API_HOST/API_PORT. Only its scheme, host
    /// and port are used, so event-producer's API_URL (a POST URL) works
    /// too. Every address its host resolves to is probed, so behind a
    /// headless Service each replica is.
    #[arg(long, env = "API_URL")]
    pub api_url: Option<String>,

    /// consumer-high's URL, whose host is resolved and every address probed
    /// (/readyz), as event-api's: the chart points it at the consumer's
    /// headless Service, so that each replica is seen. Unset, the consumer
    /// is judged from Kafka alone.
    #[arg(long, env = "CONSUMER_HIGH_URL")]
    pub consumer_high_url: Option<String>,

    /// consumer-low's URL, as CONSUMER_HIGH_URL.
    #[arg(long, env = "CONSUMER_LOW_URL")]
    pub consumer_low_url: Option<String>,

    /// event-api's host, used when API_URL is not set.
    #[arg(long, env = "API_HOST", default_value = "127.0.0.1")]
    pub api_host: String,

    /// event-api's port, used when API_URL is not set.
    #[arg(long, env = "API_PORT", default_value_t = names::EVENT_API_PORT)]
    pub api_port: u16,

    /// How often every stage is probed (Kafka offsets, event-api, stores).
    #[arg(long, env = "PIPELINE_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub pipeline_interval: Duration,

    /// Rates (events/s) are averaged over this much time.
    #[arg(long, env = "PIPELINE_RATE_WINDOW", default_value = "10s", value_parser = humantime::parse_duration)]
    pub pipeline_rate_window: Duration,

    /// A consumer group this many events behind the end of the topic is
    /// degraded.
    #[arg(long, env = "PIPELINE_LAG_EVENTS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub pipeline_lag_events: u64,

    /// A consumer group whose oldest unconsumed event arrived this long ago
    /// is degraded.
    #[arg(long, env = "PIPELINE_LAG_SECONDS", default_value = "10s", value_parser = humantime::parse_duration)]
    pub pipeline_lag_seconds: Duration,

    /// A consumer group that commits nothing this long while events wait is
    /// down.
    #[arg(long, env = "PIPELINE_STALL_AFTER", default_value = "30s", value_parser = humantime::parse_duration)]
    pub pipeline_stall_after: Duration,

    /// A store that takes longer than this to answer the probe is degraded.
    #[arg(long, env = "PIPELINE_SLOW_STORE", default_value = "1s", value_parser = humantime::parse_duration)]
    pub pipeline_slow_store: Duration,

    /// How long offsets and the periods a stage was not ok are remembered
    /// (what the chart can mark, and how far back lag in seconds can see).
    #[arg(long, env = "PIPELINE_HISTORY", default_value = "1h", value_parser = humantime::parse_duration)]
    pub pipeline_history: Duration,
}

/// A setting that cannot work, named by its variable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PipelineConfigError {
    #[error("PIPELINE_INTERVAL ({0}) must be at least 100ms and at most 1min")]
    Interval(String),
    #[error(
        "PIPELINE_RATE_WINDOW ({window}) must be at least twice PIPELINE_INTERVAL ({interval})"
    )]
    RateWindow { window: String, interval: String },
    #[error("PIPELINE_HISTORY ({history}) must be at least PIPELINE_RATE_WINDOW ({window}) and at most 24h")]
    History { history: String, window: String },
    #[error("{0} must be above 0")]
    Zero(&'static str),
    #[error("{setting} {url:?} is not an http(s) URL with a host: {reason}")]
    Url {
        setting: &'static str,
        url: String,
        reason: String,
    },
}

fn human(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

impl PipelineArgs {
    /// Checks the settings together; the first that cannot work is named.
    pub fn validate(&self) -> Result<(), PipelineConfigError> {
        let interval = self.pipeline_interval;
        if interval < Duration::from_millis(100) || interval > Duration::from_secs(60) {
            return Err(PipelineConfigError::Interval(human(interval)));
        }
        if self.pipeline_rate_window < interval * 2 {
            return Err(PipelineConfigError::RateWindow {
                window: human(self.pipeline_rate_window),
                interval: human(interval),
            });
        }
        if self.pipeline_history < self.pipeline_rate_window
            || self.pipeline_history > Duration::from_secs(24 * 3600)
        {
            return Err(PipelineConfigError::History {
                history: human(self.pipeline_history),
                window: human(self.pipeline_rate_window),
            });
        }
        for (name, value) in [
            ("PIPELINE_LAG_SECONDS", self.pipeline_lag_seconds),
            ("PIPELINE_STALL_AFTER", self.pipeline_stall_after),
            ("PIPELINE_SLOW_STORE", self.pipeline_slow_store),
        ] {
            if value.is_zero() {
                return Err(PipelineConfigError::Zero(name));
            }
        }
        self.api_base()?;
        self.consumer_bases().map(drop)
    }

    /// event-api's origin: API_URL's, else `http://API_HOST:API_PORT/`.
    pub fn api_base(&self) -> Result<reqwest::Url, PipelineConfigError> {
        let url = match &self.api_url {
            Some(url) if !url.trim().is_empty() => url.trim().to_owned(),
            _ => format!("http://{}:{}/", self.api_host, self.api_port),
        };
        base_url("API_URL", &url)
    }

    /// A consumer's base URL (CONSUMER_HIGH_URL, CONSUMER_LOW_URL), when
    /// set: its replicas are then probed too.
    pub fn consumer_bases(&self) -> Result<[Option<reqwest::Url>; 2], PipelineConfigError> {
        let base = |setting, url: &Option<String>| match url.as_deref().map(str::trim) {
            Some(url) if !url.is_empty() => base_url(setting, url).map(Some),
            _ => Ok(None),
        };
        Ok([
            base("CONSUMER_HIGH_URL", &self.consumer_high_url)?,
            base("CONSUMER_LOW_URL", &self.consumer_low_url)?,
        ])
    }
}

/// `url` checked and cut to its root, where /readyz and /metrics are,
/// whatever path it names (event-producer's API_URL is a POST URL).
fn base_url(setting: &'static str, url: &str) -> Result<reqwest::Url, PipelineConfigError> {
    let invalid = |reason: String| PipelineConfigError::Url {
        setting,
        url: url.to_owned(),
        reason,
    };
    let mut parsed = reqwest::Url::parse(url).map_err(|e| invalid(e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid(format!("scheme {:?}", parsed.scheme())));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid("no host".into()));
    }
    // /readyz and /metrics are at the root, wherever events are posted.
    parsed.set_path("/");
    parsed.set_query(None);
    parsed.set_fragment(None);
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        pipeline: PipelineArgs,
    }

    fn parse(args: &[&str]) -> PipelineArgs {
        Cli::try_parse_from(std::iter::once("t").chain(args.iter().copied()))
            .unwrap()
            .pipeline
    }

    #[test]
    fn defaults_are_valid_and_name_the_consumers_groups() {
        let args = parse(&[]);
        assert_eq!(args.validate(), Ok(()));
        assert_eq!(args.consumer_high_group, "streamproc-consumer-high");
        assert_eq!(args.api_base().unwrap().as_str(), "http://127.0.0.1:9998/");
        assert_eq!(args.kafka.bootstrap_servers(), "127.0.0.1:9092");
        assert!(args.pipeline_watch);
        assert!(!parse(&["--pipeline-watch", "false"]).pipeline_watch);
    }

    #[test]
    fn settings_that_cannot_work_are_named() {
        let error = |args: &[&str]| parse(args).validate().unwrap_err().to_string();
        assert!(error(&["--pipeline-interval", "10ms"]).contains("PIPELINE_INTERVAL"));
        assert!(error(&["--pipeline-rate-window", "1s"]).contains("PIPELINE_RATE_WINDOW"));
        assert!(error(&["--pipeline-history", "5s"]).contains("PIPELINE_HISTORY"));
        assert!(error(&["--pipeline-lag-seconds", "0s"]).contains("PIPELINE_LAG_SECONDS"));
        assert!(error(&["--api-url", "ftp://x/"]).contains("API_URL"));
        assert!(error(&["--api-url", "not a url"]).contains("API_URL"));
        assert!(Cli::try_parse_from(["t", "--pipeline-lag-events", "0"]).is_err());
    }

    #[test]
    fn api_url_wins_over_host_and_port() {
        let args = parse(&["--api-url", "http://event-api:9998", "--api-port", "1"]);
        assert_eq!(args.api_base().unwrap().as_str(), "http://event-api:9998/");
        let args = parse(&["--api-url", "http://event-api:9998/v1/events?x=1"]);
        assert_eq!(args.api_base().unwrap().as_str(), "http://event-api:9998/");
    }
}
