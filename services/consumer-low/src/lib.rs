//! consumer-low: events with amount at or below the watermark, into
//! InfluxDB. See the README beside this crate.

mod rollup;
mod store;

use std::time::Duration;

use clap::Parser;
use streamproc_event::{names, Route};
use streamproc_kafka::config::{ConsumerArgs, KafkaArgs};
use streamproc_kafka::consume::rebuild::{RebuildSummary, ReplayFrom};
use streamproc_kafka::consume::{service, ConsumerSettings};
use streamproc_kit::config::ServeArgs;
use streamproc_store::influx::InfluxArgs;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use rollup::Rollups;
pub use store::InfluxSink;
pub use streamproc_store::line::{point_identity, PointIdentity};

pub const DEFAULT_PORT: u16 = streamproc_event::names::CONSUMER_LOW_PORT;

/// consumer-low: stores events with amount <= WATERMARK in InfluxDB.
#[derive(Debug, Clone, Parser)]
#[command(version, about)]
pub struct Config {
    #[command(flatten)]
    pub serve: ServeArgs,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub consumer: ConsumerArgs,
    #[command(flatten)]
    pub influx: InfluxArgs,

    /// How often the per-second totals are retried after a failed refresh.
    /// Newly written seconds are refreshed right after each write (at most
    /// once a second when all of them are more than 5 s old).
    #[arg(long, env = "ROLLUP_INTERVAL", default_value = "500ms", value_parser = humantime::parse_duration)]
    pub rollup_interval: Duration,
}

/// How this consumer reads: the events of route Low, in its group.
fn settings(config: &Config) -> ConsumerSettings {
    ConsumerSettings::from_args(
        &config.consumer,
        &config.kafka,
        Route::Low,
        names::CONSUMER_LOW,
    )
}

/// Replays the topic into InfluxDB from `from` (`--rebuild-from`), up to
/// where it ends now, and refreshes the totals of the seconds it wrote.
pub async fn rebuild(
    config: Config,
    from: ReplayFrom,
    shutdown: CancellationToken,
) -> anyhow::Result<RebuildSummary> {
    let settings = settings(&config);
    let sink = InfluxSink::new(config.influx)?;
    let rollups = sink.rollups();
    let stop_rollups = CancellationToken::new();
    let maintainer = tokio::spawn({
        let (rollups, stop) = (rollups.clone(), stop_rollups.clone());
        async move { rollups.maintain(config.rollup_interval, stop).await }
    });
    let rebuilt = service::rebuild(&settings, from, &sink, shutdown).await;
    stop_rollups.cancel();
    maintainer.await?;
    let summary = rebuilt?;
    // What the maintainer had not reached when it stopped.
    rollups.refresh().await?;
    Ok(summary)
}

pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let settings = settings(&config);
    let influx = config.influx.clone();
    // The totals are refreshed until the consume loop has stored its last
    // batch, then once more.
    let stop_rollups = CancellationToken::new();
    let mut maintainer = None;
    let served = service::serve(
        settings,
        &config.serve,
        listener,
        |registry, visible| {
            let sink = InfluxSink::telling(influx, visible.clone())?;
            let rollups = sink.rollups();
            rollups.register(registry);
            let stop = stop_rollups.clone();
            let interval = config.rollup_interval;
            maintainer = Some(tokio::spawn(async move {
                rollups.maintain(interval, stop).await;
            }));
            Ok(sink)
        },
        shutdown,
    )
    .await;
    stop_rollups.cancel();
    if let Some(maintainer) = maintainer {
        maintainer.await?;
    }
    served
}
