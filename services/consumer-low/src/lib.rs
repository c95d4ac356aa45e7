//! consumer-low: events with amount at or below the watermark, into
//! InfluxDB. See the README beside this crate.

mod line;
mod store;

use clap::Parser;
use streamproc::config::{ConsumerArgs, KafkaArgs, ServeArgs};
use streamproc::consume::service;
use streamproc::influx::InfluxArgs;
use streamproc::Route;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use line::{point_identity, PointIdentity};
pub use store::InfluxSink;

pub const DEFAULT_PORT: u16 = 9997;

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
}

pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let settings = config
        .consumer
        .settings(&config.kafka, Route::Low, "consumer-low");
    let influx = config.influx.clone();
    service::serve(
        settings,
        config.serve.disable,
        listener,
        |_| InfluxSink::new(influx),
        shutdown,
    )
    .await
}
