//! The operational endpoints every long-running service serves:
//! `GET /healthz` (the process is alive), `GET /readyz` (its dependencies
//! answer) and `GET /metrics` (Prometheus text format).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{middleware, Router};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::error::{BoxError, Chain};
use crate::metrics::HttpMetrics;
use crate::telemetry;

/// Why a service is not ready: the dependency that does not answer, and
/// why (with its causes).
#[derive(Debug, thiserror::Error)]
#[error("{dependency}")]
pub struct NotReady {
    pub dependency: &'static str,
    #[source]
    pub source: BoxError,
}

impl NotReady {
    pub fn new(dependency: &'static str, source: impl Into<BoxError>) -> Self {
        Self {
            dependency,
            source: source.into(),
        }
    }
}

type CheckFuture = Pin<Box<dyn Future<Output = Result<(), NotReady>> + Send>>;

/// Answers whether the service's dependencies are reachable; `Err` says which
/// one is not and why.
pub type ReadinessCheck = Arc<dyn Fn() -> CheckFuture + Send + Sync>;

/// A readiness check for a service with nothing to depend on, or one whose
/// I/O is disabled.
pub fn always_ready() -> ReadinessCheck {
    Arc::new(|| Box::pin(async { Ok(()) }))
}

#[derive(Clone)]
struct OpsState {
    registry: Arc<Registry>,
    ready: ReadinessCheck,
}

/// A service's `app` with `/healthz`, `/readyz` and `/metrics` beside its own
/// routes, and every request counted and timed in `registry` (whose other
/// metrics the service registered already).
pub fn with_probes_and_metrics(
    app: Router,
    mut registry: Registry,
    ready: ReadinessCheck,
) -> Router {
    let http_metrics = HttpMetrics::register(&mut registry);
    register_start_time(&mut registry);
    app.merge(router(Arc::new(registry), ready))
        .layer(middleware::from_fn_with_state(
            http_metrics,
            HttpMetrics::track,
        ))
        .layer(telemetry::http_trace_layer())
}

/// `process_start_time_seconds`, the usual Prometheus name: a change tells a
/// restart (after a crash, or a new binary in the development loop) even
/// when the counters happen to match.
fn register_start_time(registry: &mut Registry) {
    let started: Gauge<f64, AtomicU64> = Gauge::default();
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    started.set(since_epoch.as_secs_f64());
    registry.register(
        "process_start_time_seconds",
        "When this process started serving, in seconds since the Unix epoch",
        started,
    );
}

/// Routes for `/healthz`, `/readyz` and `/metrics`.
fn router(registry: Arc<Registry>, ready: ReadinessCheck) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(OpsState { registry, ready })
}

/// `GET /` of the Go version, kept for the probes and scripts that use it.
#[utoipa::path(
    get,
    path = "/",
    summary = "Liveness probe kept from the Go version",
    description = "Answers `ok` while the process runs.",
    responses((status = 200, description = "ok", body = String, content_type = "text/plain")),
)]
pub async fn root_ok() -> &'static str {
    "ok"
}

#[utoipa::path(
    get,
    path = "/healthz",
    summary = "The process is alive",
    responses((status = 200, description = "ok", body = String, content_type = "text/plain")),
)]
async fn healthz() -> &'static str {
    "ok"
}

/// Its summary is the service's: see [`document`].
#[utoipa::path(
    get,
    path = "/readyz",
    summary = "The service's dependencies answer",
    description = "Never waits behind the service's own requests.",
    responses(
        (status = 200, description = "ready", body = String, content_type = "text/plain"),
        (status = 503, description = "not ready: names the dependency, and why", body = String, content_type = "text/plain"),
    ),
)]
async fn readyz(State(state): State<OpsState>) -> Response {
    match (state.ready)().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}", Chain(&reason)),
        )
            .into_response(),
    }
}

#[utoipa::path(
    get,
    path = "/metrics",
    summary = "Prometheus metrics",
    responses((status = 200, description = "OpenMetrics text", body = String, content_type = "application/openmetrics-text")),
)]
async fn metrics(State(state): State<OpsState>) -> Response {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &state.registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(root_ok, healthz, readyz, metrics, crate::openapi::serve_document))]
struct OpsDoc;

/// The OpenAPI paths of [`root_ok`] and of what [`with_probes_and_metrics`]
/// adds, for a service's document; `ready` says what `/readyz` checks.
/// These are always open, whatever API_TOKEN says.
pub fn document(ready: &str) -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi as _;
    let mut doc = OpsDoc::openapi();
    if let Some(get) = doc
        .paths
        .paths
        .get_mut("/readyz")
        .and_then(|item| item.get.as_mut())
    {
        get.summary = Some(ready.to_owned());
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn status(app: Router, path: &str) -> (StatusCode, String) {
        let response = app
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn readyz_reports_the_failing_dependency() {
        let failing: ReadinessCheck =
            Arc::new(|| Box::pin(async { Err(NotReady::new("kafka", "down")) }));
        let app = router(Arc::new(Registry::default()), failing);
        let (code, body) = status(app.clone(), "/readyz").await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, "not ready: kafka: down");
        assert_eq!(status(app, "/healthz").await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn metrics_are_prometheus_text() {
        let mut registry = Registry::default();
        let counter = prometheus_client::metrics::counter::Counter::<u64>::default();
        registry.register("widgets", "Widgets seen", counter.clone());
        counter.inc();
        let app = router(Arc::new(registry), always_ready());
        let (code, body) = status(app, "/metrics").await;
        assert_eq!(code, StatusCode::OK);
        assert!(body.contains("widgets_total 1"), "{body}");
    }

    #[tokio::test]
    async fn metrics_tell_when_the_process_started() {
        let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let app = with_probes_and_metrics(Router::new(), Registry::default(), always_ready());
        let (_, body) = status(app, "/metrics").await;
        let started: f64 = body
            .lines()
            .find_map(|line| line.strip_prefix("process_start_time_seconds "))
            .unwrap_or_else(|| panic!("no start time in {body}"))
            .parse()
            .unwrap();
        assert!((started - before.as_secs_f64()).abs() < 5.0, "{started}");
    }
}
