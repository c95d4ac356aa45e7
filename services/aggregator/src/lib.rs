//! aggregator: StreamProc's read side. Both stores' events as aligned time
//! series, totals for reconciling, and a live stream. See the README beside
//! this crate for the API and its semantics.

mod answers;
mod api;
mod dead_letters;
mod error;
mod lookup;
mod metrics;
mod openapi;
mod pipeline;
mod reconcile;
mod schema;
mod series;
mod stores;
mod stream;

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::routing::get;
use axum::{middleware, Router};
use clap::Parser;
use streamproc_kit::auth::{self, ApiTokenArgs};
use streamproc_kit::config::ServeArgs;
use streamproc_kit::metrics::Registry;
use streamproc_kit::ops::{self, ReadinessCheck};
use streamproc_kit::server;
use streamproc_store::influx::InfluxArgs;
use streamproc_store::timescale::PostgresArgs;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower_http::compression::CompressionLayer;

pub use error::DISABLED_MESSAGE;
pub use pipeline::{PipelineArgs, STAGES, WATCH_OFF};

use api::Source;
use dead_letters::DeadLetters;
use metrics::ApiMetrics;
use reconcile::Reconciler;
use stores::{InfluxReader, QueryMetrics, Stores, TimescaleReader};
use stream::{Feeds, StreamSlots};

pub const DEFAULT_PORT: u16 = streamproc_event::names::AGGREGATOR_PORT;

/// The OpenAPI description served at `/openapi.json`, generated from the
/// code (see `src/openapi.rs`).
pub static OPENAPI: LazyLock<String> = LazyLock::new(openapi::document);

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
    /// Where the other stages are, and when each counts as degraded.
    #[command(flatten)]
    pub pipeline: PipelineArgs,

    /// Longest wait for one store's answer; past it, that store is reported
    /// unavailable.
    #[arg(long, env = "QUERY_TIMEOUT", default_value = "3s", value_parser = humantime::parse_duration)]
    pub query_timeout: Duration,

    /// Longest between two events of /api/v1/stream. A consumer that tells
    /// what it stored (CONSUMER_HIGH_URL, CONSUMER_LOW_URL) makes the
    /// stream send sooner; this tick moves the newest bucket along when
    /// nothing is stored, and bounds the delay while no consumer is heard.
    #[arg(long, env = "STREAM_INTERVAL", default_value = "250ms", value_parser = humantime::parse_duration)]
    pub stream_interval: Duration,

    /// Shortest time between two events of one /api/v1/stream: under a
    /// steady load the streams of each grid (step, last) query both stores
    /// up to once per gap, together.
    #[arg(long, env = "STREAM_MIN_GAP", default_value = "50ms", value_parser = humantime::parse_duration)]
    pub stream_min_gap: Duration,

    /// Most /api/v1/stream connections open at once; past it a new one
    /// ends the oldest, whose browser reconnects.
    #[arg(long, env = "MAX_STREAMS", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_streams: u32,

    /// Longest a stream stays open; then it ends and the browser
    /// reconnects, without a gap or a repeated point.
    #[arg(long, env = "STREAM_MAX_AGE", default_value = "10m", value_parser = humantime::parse_duration)]
    pub stream_max_age: Duration,

    /// Most /api, /api/v1/series, /api/v1/totals, /api/v1/events/{id} and
    /// /api/v1/dead-letters requests answered at once; past it a new one is
    /// answered 503 with Retry-After.
    #[arg(long, env = "MAX_QUERIES", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_queries: u32,

    /// Longest time to answer /api, /api/v1/series or /api/v1/totals; past
    /// it the answer is 503 with Retry-After. Must exceed QUERY_TIMEOUT, so
    /// that a slow store is named rather than cut off.
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,

    /// Dead letters kept in memory, the newest: what /api/v1/dead-letters
    /// lists and /api/v1/events/{id} searches. Each takes at most about
    /// 2 KiB (its payload shown up to 1 KiB).
    #[arg(long, env = "DEAD_LETTERS_KEPT", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub dead_letters_kept: u32,

    /// When set, /api and every /api/v1/* path (the stream and the
    /// pipeline included) require `Authorization: Bearer <token>` and answer
    /// 401 without it. Probes, metrics and /openapi.json stay open. (API_URL
    /// and its kin name event-api; this token is the aggregator's own.)
    #[command(flatten)]
    pub token: ApiTokenArgs,
}

#[derive(Clone)]
struct AppState {
    source: Arc<Source>,
    /// What open streams send, one query loop per grid.
    feeds: Arc<Feeds>,
    shutdown: CancellationToken,
    metrics: ApiMetrics,
    /// A place for each open stream, MAX_STREAMS in all.
    streams: Arc<StreamSlots>,
    stream_max_age: Duration,
    /// A place for each query being answered, MAX_QUERIES in all.
    queries: Arc<Semaphore>,
    request_timeout: Duration,
    /// The pipeline's newest health snapshot; `None` when DISABLE is set or
    /// PIPELINE_WATCH is false.
    pipeline: Option<pipeline::Latest>,
    /// The newest dead letters; `None` as `pipeline`.
    dead_letters: Option<DeadLetters>,
    /// What `/api/v1/reconcile` reads besides the stores; `None` as
    /// `pipeline`.
    reconciler: Option<Arc<Reconciler>>,
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
    let token = config.token.token()?;
    let mut registry = Registry::default();
    let metrics = ApiMetrics::register(&mut registry);

    config.pipeline.validate()?;
    let (source, ready, pipeline, dead_letters, reconciler) = if config.serve.disable {
        tracing::warn!("DISABLE is set: queries are answered without reading the stores");
        (Source::Disabled, ops::always_ready(), None, None, None)
    } else {
        let stores = Arc::new(Stores::new(
            TimescaleReader::new(&config.postgres)?,
            InfluxReader::new(config.influx.clone())?,
            config.query_timeout,
            QueryMetrics::register(&mut registry),
        ));
        tracing::info!(
            timescaledb = %config.postgres.describe(),
            influxdb = %config.influx.base_url(),
            "reading the high series from timescaledb and the low series from influxdb"
        );
        // All three read Kafka, so PIPELINE_WATCH switches them together.
        let (pipeline, dead_letters, reconciler) = if config.pipeline.pipeline_watch {
            let pipeline = pipeline::start(
                pipeline::Setup {
                    args: &config.pipeline,
                    timescale: TimescaleReader::new(&config.postgres)?,
                    influx: InfluxReader::new(config.influx.clone())?,
                    timeout: config.query_timeout,
                    registry: &mut registry,
                },
                shutdown.clone(),
            )?;
            let dead_letters = DeadLetters::start(
                &config.pipeline.kafka.bootstrap_servers(),
                &config.pipeline.kafka_dlq_topic,
                config.dead_letters_kept as usize,
                shutdown.clone(),
            )?;
            let reconciler =
                Reconciler::new(&config.pipeline, dead_letters.clone(), config.query_timeout)?;
            (
                Some(pipeline),
                Some(dead_letters),
                Some(Arc::new(reconciler)),
            )
        } else {
            tracing::info!(
                "PIPELINE_WATCH is false: the pipeline is not watched, the dead letters not read, \
                 nothing reconciled"
            );
            (None, None, None)
        };
        (
            Source::Stores(stores.clone()),
            stores_readiness(stores),
            pipeline,
            dead_letters,
            reconciler,
        )
    };

    // Disabled, there is nothing to stream, so no consumer to hear.
    let consumers = if config.serve.disable {
        Vec::new()
    } else {
        config
            .pipeline
            .consumer_bases()?
            .into_iter()
            .flatten()
            .collect()
    };
    let wakes = stream::wakes::listen(consumers, shutdown.clone())?;
    let state = AppState {
        source: Arc::new(source),
        feeds: Feeds::new(config.stream_interval, config.stream_min_gap, wakes),
        shutdown: shutdown.clone(),
        metrics,
        streams: Arc::new(StreamSlots::new(permits(config.max_streams))),
        stream_max_age: config.stream_max_age,
        queries: Arc::new(Semaphore::new(permits(config.max_queries))),
        request_timeout: config.request_timeout,
        pipeline,
        dead_letters,
        reconciler,
    };
    let queries = Router::new()
        .route("/api", get(api::legacy))
        .route("/api/v1/series", get(api::series))
        .route("/api/v1/totals", get(api::totals))
        .route("/api/v1/events/{id}", get(lookup::event))
        .route("/api/v1/reconcile", get(reconcile::reconcile))
        .route("/api/v1/dead-letters", get(lookup::dead_letters))
        .route(
            "/api/v1/dead-letters/{partition}/{offset}",
            get(lookup::dead_letter),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), api::bounded));
    // The stream has its own limit, and /readyz (added below) none of
    // these, so that a probe is never queued behind user queries. The token
    // is checked before any limit: a refused request takes no place.
    let api = Router::new()
        .route("/api/v1/stream", get(stream::stream))
        .route("/api/v1/pipeline", get(api::pipeline))
        .merge(queries);
    if token.is_some() {
        tracing::info!("/api requires a bearer token (API_TOKEN)");
    }
    let app = Router::new()
        .route("/", get(ops::root_ok))
        .route(
            "/openapi.json",
            get(streamproc_kit::openapi::serve_document).with_state(OPENAPI.as_str()),
        )
        .merge(auth::protect(api, token))
        .with_state(state)
        // JSON answers shrink about tenfold; the event stream is left
        // alone (tower-http never compresses text/event-stream).
        .layer(CompressionLayer::new());
    let app = ops::with_probes_and_metrics(app, registry, ready);

    tracing::info!(addr = %listener.local_addr()?, "aggregator listening");
    server::serve(listener, app, &config.serve.connections, shutdown).await?;
    tracing::info!("aggregator stopped");
    Ok(())
}

fn permits(limit: u32) -> usize {
    // A u32 fits a usize on every target tokio supports; the cap keeps
    // within what a Semaphore accepts if it ever did not.
    usize::try_from(limit).map_or(Semaphore::MAX_PERMITS, |n| n.min(Semaphore::MAX_PERMITS))
}

fn stores_readiness(stores: Arc<Stores>) -> ReadinessCheck {
    Arc::new(move || {
        let stores = stores.clone();
        Box::pin(async move { stores.check().await })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// The query endpoints' limits, around a handler as slow as asked; the
    /// `Notify` is told each time a request reaches the handler.
    async fn serve_slow(
        max_queries: u32,
        request_timeout: Duration,
    ) -> (String, Arc<tokio::sync::Notify>) {
        let entered = Arc::new(tokio::sync::Notify::new());
        let state = AppState {
            source: Arc::new(Source::Disabled),
            feeds: Feeds::new(
                Duration::from_secs(1),
                Duration::from_millis(50),
                tokio::sync::watch::channel(()).1,
            ),
            shutdown: CancellationToken::new(),
            metrics: ApiMetrics::register(&mut Registry::default()),
            streams: Arc::new(StreamSlots::new(1)),
            stream_max_age: Duration::from_secs(60),
            queries: Arc::new(Semaphore::new(permits(max_queries))),
            request_timeout,
            pipeline: None,
            dead_letters: None,
            reconciler: None,
        };
        let slow = {
            let entered = entered.clone();
            |axum::extract::Query(q): axum::extract::Query<Vec<(String, u64)>>| async move {
                entered.notify_one();
                tokio::time::sleep(Duration::from_millis(q[0].1)).await;
                "done"
            }
        };
        let app = Router::new()
            .route("/slow", get(slow))
            .route_layer(middleware::from_fn_with_state(state.clone(), api::bounded))
            .with_state(state);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, entered)
    }

    #[tokio::test]
    async fn a_slow_answer_is_cut_off_with_503_and_retry_after() {
        let (url, _) = serve_slow(4, Duration::from_millis(200)).await;
        let response = reqwest::get(format!("{url}/slow?ms=5000")).await.unwrap();
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "1");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["message"], "no answer within 200ms");
        let fast = reqwest::get(format!("{url}/slow?ms=0")).await.unwrap();
        assert_eq!(fast.status(), 200);
    }

    #[tokio::test]
    async fn queries_past_max_queries_are_refused_at_once() {
        let (url, entered) = serve_slow(1, Duration::from_secs(10)).await;
        let held = tokio::spawn(reqwest::get(format!("{url}/slow?ms=1000")));
        // The held request is in the handler, so it has the one place.
        tokio::time::timeout(Duration::from_secs(10), entered.notified())
            .await
            .expect("the held request reaches the handler");
        let started = std::time::Instant::now();
        let refused = reqwest::get(format!("{url}/slow?ms=0")).await.unwrap();
        assert_eq!(refused.status(), 503);
        assert_eq!(refused.headers()["retry-after"], "1");
        assert!(started.elapsed() < Duration::from_millis(500), "not queued");
        assert_eq!(held.await.unwrap().unwrap().status(), 200);
        let after = reqwest::get(format!("{url}/slow?ms=0")).await.unwrap();
        assert_eq!(after.status(), 200, "the place is given back");
    }

    #[test]
    fn request_timeout_must_exceed_query_timeout() {
        let config = Config::try_parse_from([
            "aggregator",
            "--query-timeout",
            "5s",
            "--request-timeout",
            "5s",
        ])
        .unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let error = runtime
            .block_on(async {
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                run(config, listener, CancellationToken::new()).await
            })
            .unwrap_err();
        assert!(error.to_string().contains("REQUEST_TIMEOUT"), "{error}");
    }

    /// The numbers in the OpenAPI document are the ones the code enforces.
    #[test]
    fn the_openapi_limits_are_the_enforced_ones() {
        use streamproc_grid::{MAX_POINTS, MAX_QUERY_TIME_MS, MAX_STEP_MS};
        let spec: Value = serde_json::from_str(&OPENAPI).unwrap();
        let schemas = &spec["components"]["schemas"];
        assert_eq!(schemas["Time"]["anyOf"][0]["maximum"], MAX_QUERY_TIME_MS);
        assert_eq!(schemas["Step"]["anyOf"][0]["maximum"], MAX_STEP_MS / 1000);
        let grid = &schemas["GridQuery"];
        assert_eq!(grid["properties"]["max_points"]["maximum"], MAX_POINTS);
        assert_eq!(
            grid["not"]["required"],
            serde_json::json!(["step", "max_points"])
        );
        let stream = &schemas["StreamQuery"];
        assert_eq!(stream["properties"]["last"]["maximum"], MAX_POINTS);
        assert_eq!(stream["properties"]["last"]["minimum"], 1);
        for path in ["/api", "/api/v1/series", "/api/v1/totals", "/api/v1/stream"] {
            let unavailable = &spec["paths"][path]["get"]["responses"]["503"];
            assert!(unavailable["headers"]["Retry-After"].is_object(), "{path}");
        }
        for path in ["/api/v1/series", "/api/v1/stream"] {
            let responses = &spec["paths"][path]["get"]["responses"];
            assert!(responses["400"].is_object(), "{path}");
        }
        let unavailable = &spec["paths"]["/api/v1/pipeline"]["get"]["responses"]["503"];
        assert!(unavailable["headers"]["Retry-After"].is_object());
        assert_eq!(
            schemas["Stage"]["properties"]["name"]["enum"],
            serde_json::json!(STAGES)
        );
        let stages = &schemas["Pipeline"]["properties"]["stages"];
        assert_eq!(stages["minItems"], STAGES.len());
        assert_eq!(stages["maxItems"], STAGES.len());
    }
}
