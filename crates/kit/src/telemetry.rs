//! Logging: structured events on stderr (stdout stays free for a tool's own
//! output), filtered by `RUST_LOG` (default `info`). `LOG_FORMAT=json`
//! writes one JSON object per event, with its span's fields, for a cluster's
//! log collector; anything else, or nothing, writes readable lines.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response};
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::trace::{DefaultOnBodyChunk, DefaultOnEos, TraceLayer};
use tracing::Span;
use tracing_subscriber::EnvFilter;

use crate::metrics::{method_label, path_label};

/// The environment variable that picks the format.
pub const LOG_FORMAT: &str = "LOG_FORMAT";

pub fn init() {
    let json = std::env::var(LOG_FORMAT).is_ok_and(|format| format.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(std::io::stderr);
    // A second call (tests starting several services) keeps the first setup.
    let _ = if json {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.try_init()
    };
}

/// For tests: the same logs, written through libtest's capture so that
/// they show only for failing tests.
pub fn init_for_tests() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_test_writer()
        .try_init();
}

fn filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
}

/// The span every HTTP request runs in: `method`, `path` (the route
/// pattern) and, once answered, `status` and `latency_ms`: the labels of
/// `http_requests` and `http_request_duration_seconds`. Each answer is
/// logged at debug; a 5xx at warn, since overload answers 503 by design.
pub type HttpTraceLayer = TraceLayer<
    SharedClassifier<ServerErrorsAsFailures>,
    fn(&Request<Body>) -> Span,
    (),
    fn(&Response<Body>, Duration, &Span),
    DefaultOnBodyChunk,
    DefaultOnEos,
    (),
>;

pub fn http_trace_layer() -> HttpTraceLayer {
    TraceLayer::new_for_http()
        .make_span_with(request_span as fn(&Request<Body>) -> Span)
        .on_request(())
        .on_response(record_response as fn(&Response<Body>, Duration, &Span))
        // A 5xx is logged by `record_response`, at warn, once.
        .on_failure(())
}

fn request_span(request: &Request<Body>) -> Span {
    tracing::info_span!(
        "request",
        method = method_label(request.method()),
        path = path_label(request),
        status = tracing::field::Empty,
        latency_ms = tracing::field::Empty,
    )
}

fn record_response(response: &Response<Body>, latency: Duration, span: &Span) {
    let status = response.status().as_u16();
    let latency_ms = latency.as_secs_f64() * 1000.0;
    span.record("status", status);
    span.record("latency_ms", latency_ms);
    if response.status().is_server_error() {
        tracing::warn!(status, latency_ms, "answered with a server error");
    } else {
        tracing::debug!(status, latency_ms, "answered");
    }
}
