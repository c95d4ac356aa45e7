//! consumer-high: events with amount above the watermark, into TimescaleDB.
//! See the README beside this crate.

mod store;

use clap::Parser;
use streamproc_event::{names, Route};
use streamproc_kafka::config::{ConsumerArgs, KafkaArgs};
use streamproc_kafka::consume::rebuild::{RebuildSummary, ReplayFrom};
use streamproc_kafka::consume::{service, ConsumerSettings};
use streamproc_kit::config::ServeArgs;
use streamproc_store::timescale::PostgresArgs;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use store::TimescaleSink;

pub const DEFAULT_PORT: u16 = streamproc_event::names::CONSUMER_HIGH_PORT;

/// consumer-high: stores events with amount > WATERMARK in TimescaleDB.
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
    pub postgres: PostgresArgs,
}

/// How this consumer reads: the events of route High, in its group.
fn settings(config: &Config) -> ConsumerSettings {
    ConsumerSettings::from_args(
        &config.consumer,
        &config.kafka,
        Route::High,
        names::CONSUMER_HIGH,
    )
}

/// Replays the topic into TimescaleDB from `from` (`--rebuild-from`), up to
/// where it ends now.
pub async fn rebuild(
    config: Config,
    from: ReplayFrom,
    shutdown: CancellationToken,
) -> anyhow::Result<RebuildSummary> {
    let settings = settings(&config);
    let sink = TimescaleSink::new(&config.postgres)?;
    Ok(service::rebuild(&settings, from, &sink, shutdown).await?)
}

pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let settings = settings(&config);
    let postgres = config.postgres.clone();
    service::serve(
        settings,
        &config.serve,
        listener,
        |_, _| TimescaleSink::new(&postgres),
        shutdown,
    )
    .await
}
