//! Configuration shared by the services: every flag is also read from an
//! environment variable, and the Go version's variable names keep working.

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio::net::TcpListener;

use streamproc_event::{EventBounds, AMOUNT_LIMIT_CEILING};

use crate::server::ConnectionArgs;

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

#[derive(Debug, thiserror::Error)]
#[error("must be a number above 0 and at most {AMOUNT_LIMIT_CEILING:e}")]
struct AmountLimitError;

fn parse_amount_limit(s: &str) -> Result<f64, AmountLimitError> {
    match s.trim().parse::<f64>() {
        Ok(limit) if limit > 0.0 && limit <= AMOUNT_LIMIT_CEILING => Ok(limit),
        _ => Err(AmountLimitError),
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

    #[command(flatten)]
    pub connections: ConnectionArgs,
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
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
