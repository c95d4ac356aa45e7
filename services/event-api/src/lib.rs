//! event-api: StreamProc's HTTP intake. See the README beside this crate for
//! its endpoints and configuration.

mod body;
mod config;
mod error;
mod ingest;
mod metrics;
mod publisher;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::header;
use axum::routing::{get, post};
use axum::Router;
use streamproc::kafka;
use streamproc::metrics::Registry;
use streamproc::ops::{self, ReadinessCheck};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

pub use config::Config;
use ingest::{IngestState, Intake};
use metrics::ApiMetrics;
use publisher::Publisher;

pub const DEFAULT_PORT: u16 = 9998;

/// The OpenAPI description served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// How long a readiness probe waits for the broker.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs event-api on `listener` until `shutdown` is cancelled, then finishes
/// the requests in flight and flushes the producer.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut registry = Registry::default();
    let metrics = ApiMetrics::register(&mut registry);

    let (intake, ready) = if config.serve.disable {
        tracing::warn!("DISABLE is set: requests are answered, nothing is written to Kafka");
        (Intake::Disabled, ops::always_ready())
    } else {
        let brokers = config.kafka.bootstrap_servers();
        let (producer, broker_state) =
            kafka::reliable_producer(&brokers, config.kafka_delivery_timeout)?;
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
        metrics,
    };
    let app = Router::new()
        .route("/", get(ops::root_ok).post(ingest::ingest))
        .route("/v1/events", post(ingest::ingest))
        .route("/openapi.json", get(openapi))
        .with_state(state)
        .layer(DefaultBodyLimit::max(config.max_body_bytes));
    let app = ops::with_probes_and_metrics(app, registry, ready);

    tracing::info!(
        "event-api listening on {}, topic {:?}",
        listener.local_addr()?,
        config.kafka.kafka_topic
    );
    ops::serve(listener, app, shutdown).await?;
    if let Intake::Kafka(publisher) = intake.as_ref() {
        publisher.flush().await;
    }
    tracing::info!("event-api stopped");
    Ok(())
}

async fn openapi() -> ([(header::HeaderName, &'static str); 1], &'static str) {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

fn kafka_readiness(publisher: &Publisher) -> ReadinessCheck {
    let producer = publisher.producer().clone();
    let topic = publisher.topic().to_owned();
    Arc::new(move || {
        let producer = producer.clone();
        let topic = topic.clone();
        Box::pin(async move {
            kafka::check_reachable(&producer, &topic, READY_TIMEOUT)
                .await
                .map_err(|e| format!("kafka: {e}"))
        })
    })
}

/// The broker may start after event-api (or be down for a while): keep trying
/// to create the topic in the background instead of failing at start-up.
async fn create_topic_until_done(config: Config, shutdown: CancellationToken) {
    let brokers = config.kafka.bootstrap_servers();
    let topic = &config.kafka.kafka_topic;
    let mut delay = Duration::from_millis(200);
    loop {
        let attempt = kafka::ensure_topic(
            &brokers,
            topic,
            config.kafka_partitions,
            config.kafka_replication_factor,
            Duration::from_secs(5),
        );
        match attempt.await {
            Ok(()) => {
                tracing::info!("topic {topic:?} is ready");
                return;
            }
            Err(e) => tracing::warn!("{e}; trying again in {delay:?}"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}
