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
use axum::{middleware, Router};
use clap::Parser;
use streamproc::config::ServeArgs;
use streamproc::influx::InfluxArgs;
use streamproc::metrics::Registry;
use streamproc::ops::{self, ReadinessCheck};
use streamproc::timescale::PostgresArgs;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

pub use api::DISABLED_MESSAGE;
pub use grid::{DEFAULT_MAX_POINTS, MAX_POINTS, MAX_QUERY_TIME_MS, MAX_STEP_MS};

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

    /// Most /api/v1/stream connections open at once; past it a new one is
    /// answered 503 with Retry-After.
    #[arg(long, env = "MAX_STREAMS", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_streams: u32,

    /// Most /api, /api/v1/series and /api/v1/totals requests answered at
    /// once; past it a new one is answered 503 with Retry-After.
    #[arg(long, env = "MAX_QUERIES", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_queries: u32,

    /// Longest time to answer /api, /api/v1/series or /api/v1/totals; past
    /// it the answer is 503 with Retry-After. Must exceed QUERY_TIMEOUT, so
    /// that a slow store is named rather than cut off.
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,
}

#[derive(Clone)]
struct AppState {
    source: Arc<Source>,
    stream_interval: Duration,
    shutdown: CancellationToken,
    metrics: StoreMetrics,
    /// A place for each open stream, MAX_STREAMS in all.
    streams: Arc<Semaphore>,
    /// A place for each query being answered, MAX_QUERIES in all.
    queries: Arc<Semaphore>,
    request_timeout: Duration,
}

/// Runs the aggregator on `listener` until `shutdown` is cancelled. Starts
/// whether or not the stores answer; `/readyz` tells when they do.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        config.request_timeout > config.query_timeout,
        "REQUEST_TIMEOUT ({}) must be longer than QUERY_TIMEOUT ({})",
        humantime::format_duration(config.request_timeout),
        humantime::format_duration(config.query_timeout)
    );
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
        streams: Arc::new(Semaphore::new(permits(config.max_streams))),
        queries: Arc::new(Semaphore::new(permits(config.max_queries))),
        request_timeout: config.request_timeout,
    };
    let queries = Router::new()
        .route("/api", get(api::legacy))
        .route("/api/v1/series", get(api::series))
        .route("/api/v1/totals", get(api::totals))
        .route_layer(middleware::from_fn_with_state(state.clone(), api::bounded));
    // The stream has its own limit, and /readyz (added below) none of
    // these, so that a probe is never queued behind user queries.
    let app = Router::new()
        .route("/", get(ops::root_ok))
        .route("/api/v1/stream", get(stream::stream))
        .route("/openapi.json", get(openapi))
        .merge(queries)
        .with_state(state);
    let app = ops::with_probes_and_metrics(app, registry, ready);

    tracing::info!("aggregator listening on {}", listener.local_addr()?);
    ops::serve(listener, app, shutdown).await?;
    tracing::info!("aggregator stopped");
    Ok(())
}

fn permits(limit: u32) -> usize {
    // A u32 fits a usize on every target tokio supports; the cap keeps
    // within what a Semaphore accepts if it ever did not.
    usize::try_from(limit).map_or(Semaphore::MAX_PERMITS, |n| n.min(Semaphore::MAX_PERMITS))
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
