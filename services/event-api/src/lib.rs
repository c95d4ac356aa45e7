//! event-api: StreamProc's HTTP intake. See the README beside this crate for
//! its endpoints and configuration.

/// Public for the fuzz targets in `fuzz/`; the service itself uses it only inside.
mod config;
mod error;
mod ingest;
mod metrics;
mod openapi;
mod publisher;
mod schema;

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, MethodRouter};
use axum::{BoxError, Router};
use streamproc_kafka::producer;
use streamproc_kit::auth::{self, Token};
use streamproc_kit::backoff::Backoff;
use streamproc_kit::error::Chain;
use streamproc_kit::metrics::Registry;
use streamproc_kit::ops::{self, NotReady, ReadinessCheck};
use streamproc_kit::server;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::error::Overloaded;
use tower::load_shed::LoadShedLayer;
use tower::timeout::TimeoutLayer;
use tower::ServiceBuilder;

pub use config::Config;
use error::ApiError;
use ingest::{IngestState, Intake};
use metrics::ApiMetrics;
use publisher::Publisher;

pub const DEFAULT_PORT: u16 = streamproc_event::names::EVENT_API_PORT;

/// The OpenAPI description served at `/openapi.json`, generated from the
/// code (see `src/openapi.rs`).
pub static OPENAPI: LazyLock<String> = LazyLock::new(openapi::document);

/// How long a readiness probe waits for the broker.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs event-api on `listener` until `shutdown` is cancelled, then finishes
/// the requests in flight and flushes the producer.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let token = config.token.token()?;
    let mut registry = Registry::default();
    let metrics = ApiMetrics::register(&mut registry);

    let (intake, ready) = if config.serve.disable {
        tracing::warn!("DISABLE is set: requests are answered, nothing is written to Kafka");
        (Intake::Disabled, ops::always_ready())
    } else {
        let brokers = config.kafka.bootstrap_servers();
        let (producer, broker_state) = producer::producer(
            &brokers,
            config.kafka_delivery_timeout,
            config.kafka.producer,
        )?;
        tokio::spawn(broker_state.clone().watch(
            producer.clone(),
            config.kafka.kafka_topic.clone(),
            shutdown.clone(),
        ));
        tokio::spawn(create_topic_until_done(config.clone(), shutdown.clone()));
        let publisher = Publisher::new(
            producer,
            broker_state,
            config.kafka.kafka_topic.clone(),
            config.kafka_delivery_timeout,
        );
        let ready = kafka_readiness(&publisher);
        (Intake::Kafka(publisher), ready)
    };
    let intake = Arc::new(intake);

    let state = IngestState {
        intake: intake.clone(),
        in_flight: Arc::new(Semaphore::new(config.max_in_flight_events as usize)),
        max_in_flight: config.max_in_flight_events,
        max_body_bytes: config.max_body_bytes,
        max_events_per_request: config.max_events_per_request as usize,
        bounds: config.bounds.bounds(),
        body_read_timeout: config.body_read_timeout,
        metrics: metrics.clone(),
    };
    if token.is_some() {
        tracing::info!("ingest requires a bearer token (API_TOKEN)");
    }
    let ingest = ingest_route(&config, metrics, token);
    let app = Router::new()
        .route("/", get(ops::root_ok).merge(ingest.clone()))
        .route("/v1/events", ingest)
        .route(
            "/openapi.json",
            get(streamproc_kit::openapi::serve_document).with_state(OPENAPI.as_str()),
        )
        .with_state(state)
        .layer(DefaultBodyLimit::max(config.max_body_bytes));
    let app = ops::with_probes_and_metrics(app, registry, ready);

    tracing::info!(
        addr = %listener.local_addr()?,
        topic = %config.kafka.kafka_topic,
        "event-api listening"
    );
    server::serve(listener, app, &config.serve.connections, shutdown).await?;
    if let Intake::Kafka(publisher) = intake.as_ref() {
        publisher.flush().await;
    }
    tracing::info!("event-api stopped");
    Ok(())
}

/// The ingest handler behind its bounds: at most `max_concurrent_requests`
/// at once over both ingest paths (one shared semaphore; past it 503 at once,
/// never a queue), each within `request_timeout`. Probes, metrics and the
/// document are routed around these bounds, so they answer under any load.
/// With a token, a request without it is answered 401 before it takes a
/// place or has its body read.
fn ingest_route(
    config: &Config,
    metrics: ApiMetrics,
    token: Option<Token>,
) -> MethodRouter<IngestState> {
    let limit = config.max_concurrent_requests;
    let timeout = config.request_timeout;
    let on_limit = move |error: BoxError| {
        let metrics = metrics.clone();
        async move {
            if error.is::<Overloaded>() {
                metrics.requests_shed.inc();
                ApiError::Overloaded { limit }
            } else {
                // Elapsed is the only other error: the handler cannot fail.
                metrics.request_timeouts.inc();
                ApiError::RequestTimeout { limit: timeout }
            }
        }
    };
    let bounded = post(ingest::ingest).layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(on_limit))
            .layer(LoadShedLayer::new())
            .layer(GlobalConcurrencyLimitLayer::new(limit as usize))
            .layer(TimeoutLayer::new(timeout)),
    );
    auth::protect_method(bounded, token)
}

fn kafka_readiness(publisher: &Publisher) -> ReadinessCheck {
    let producer = publisher.producer().clone();
    let topic = publisher.topic().to_owned();
    Arc::new(move || {
        let producer = producer.clone();
        let topic = topic.clone();
        Box::pin(async move {
            producer::check_reachable(&producer, &topic, READY_TIMEOUT)
                .await
                .map_err(|e| NotReady::new("kafka", e))
        })
    })
}

/// The broker may start after event-api (or be down for a while): keep trying
/// to create the topic in the background instead of failing at start-up.
async fn create_topic_until_done(config: Config, shutdown: CancellationToken) {
    let brokers = config.kafka.bootstrap_servers();
    let topic = &config.kafka.kafka_topic;
    let mut retry = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    loop {
        let attempt = producer::ensure_topic(
            &brokers,
            topic,
            config.kafka_partitions,
            config.kafka_replication_factor,
            Duration::from_secs(5),
        );
        match attempt.await {
            Ok(()) => {
                tracing::info!(topic = %topic, "topic ready");
                return;
            }
            Err(e) => {
                let delay = retry.next_delay(None);
                tracing::warn!(
                    topic = %topic,
                    error = %Chain(&e),
                    retry_in = ?delay,
                    "creating the topic failed; retrying"
                );
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}
