//! aggregator: StreamProc's read side. Both stores' events as aligned time
//! series, totals for reconciling, and a live stream. See the README beside
//! this crate for the API and its semantics.

mod api;
mod grid;
mod metrics;
mod series;
mod stores;
mod stream;

use std::sync::Arc;
use std::time::Duration;

use axum::http::header;
use axum::routing::get;
use axum::Router;
use clap::Parser;
use streamproc::config::ServeArgs;
use streamproc::influx::InfluxArgs;
use streamproc::metrics::Registry;
use streamproc::ops::{self, ReadinessCheck};
use streamproc::timescale::PostgresArgs;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use api::DISABLED_MESSAGE;
pub use grid::{DEFAULT_MAX_POINTS, MAX_POINTS};

use api::Source;
use metrics::StoreMetrics;
use stores::{InfluxReader, Stores, TimescaleReader};

pub const DEFAULT_PORT: u16 = 9995;

/// The OpenAPI description served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// aggregator: serves the events of both stores as aligned time series.
#[derive(Debug, Clone, Parser)]
#[command(version, about)]
pub struct Config {
    #[command(flatten)]
    pub serve: ServeArgs,
    #[command(flatten)]
    pub postgres: PostgresArgs,
    #[command(flatten)]
    pub influx: InfluxArgs,

    /// Longest wait for one store's answer; past it, that store is reported
    /// unavailable.
    #[arg(long, env = "QUERY_TIMEOUT", default_value = "3s", value_parser = humantime::parse_duration)]
    pub query_timeout: Duration,

    /// How often /api/v1/stream sends the newest buckets.
    #[arg(long, env = "STREAM_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub stream_interval: Duration,
}

#[derive(Clone)]
struct AppState {
    source: Arc<Source>,
    stream_interval: Duration,
    shutdown: CancellationToken,
    metrics: StoreMetrics,
}

/// Runs the aggregator on `listener` until `shutdown` is cancelled. Starts
/// whether or not the stores answer; `/readyz` tells when they do.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut registry = Registry::default();
    let metrics = StoreMetrics::register(&mut registry);

    let (source, ready) = if config.serve.disable {
        tracing::warn!("DISABLE is set: queries are answered without reading the stores");
        (Source::Disabled, ops::always_ready())
    } else {
        let stores = Arc::new(Stores::new(
            TimescaleReader::new(&config.postgres)?,
            InfluxReader::new(config.influx.clone())?,
            config.query_timeout,
            metrics.clone(),
        ));
        tracing::info!(
            "reading the high series from {} and the low series from {}",
            config.postgres.describe(),
            config.influx.base_url()
        );
        (Source::Stores(stores.clone()), stores_readiness(stores))
    };

    let state = AppState {
        source: Arc::new(source),
        stream_interval: config.stream_interval,
        shutdown: shutdown.clone(),
        metrics,
    };
    let app = Router::new()
        .route("/", get(ops::root_ok))
        .route("/api", get(api::legacy))
        .route("/api/v1/series", get(api::series))
        .route("/api/v1/totals", get(api::totals))
        .route("/api/v1/stream", get(stream::stream))
        .route("/openapi.json", get(openapi))
        .with_state(state);
    let app = ops::with_probes_and_metrics(app, registry, ready);

    tracing::info!("aggregator listening on {}", listener.local_addr()?);
    ops::serve(listener, app, shutdown).await?;
    tracing::info!("aggregator stopped");
    Ok(())
}

async fn openapi() -> ([(header::HeaderName, &'static str); 1], &'static str) {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

fn stores_readiness(stores: Arc<Stores>) -> ReadinessCheck {
    Arc::new(move || {
        let stores = stores.clone();
        Box::pin(async move { stores.check().await })
    })
}
