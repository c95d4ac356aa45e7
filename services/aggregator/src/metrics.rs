use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use streamproc_kit::metrics::latency_histogram;

use crate::stores::Store;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabels {
    store: &'static str,
}

/// Why a request was refused with 503 before or instead of its answer.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Rejection {
    /// MAX_STREAMS streams were open.
    Streams,
    /// MAX_QUERIES queries were being answered.
    Queries,
    /// No answer within REQUEST_TIMEOUT.
    Timeout,
}

impl Rejection {
    fn name(self) -> &'static str {
        match self {
            Self::Streams => "streams",
            Self::Queries => "queries",
            Self::Timeout => "timeout",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectionLabels {
    reason: &'static str,
}

/// The aggregator's own figures, beside the shared HTTP request counters.
#[derive(Clone)]
pub struct StoreMetrics {
    query_seconds: Family<StoreLabels, Histogram>,
    failures: Family<StoreLabels, Counter>,
    rejections: Family<RejectionLabels, Counter>,
    pub stream_clients: Gauge,
}

impl StoreMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            query_seconds: Family::new_with_constructor(latency_histogram),
            failures: Family::default(),
            rejections: Family::default(),
            stream_clients: Gauge::default(),
        };
        registry.register(
            "store_query_seconds",
            "Time for a store to answer one query, by store",
            metrics.query_seconds.clone(),
        );
        registry.register(
            "store_query_failures",
            "Store queries that failed or timed out, by store",
            metrics.failures.clone(),
        );
        registry.register(
            "requests_rejected",
            "Requests refused with 503 because a limit was reached, by reason",
            metrics.rejections.clone(),
        );
        registry.register(
            "stream_clients",
            "Open /api/v1/stream connections",
            metrics.stream_clients.clone(),
        );
        metrics
    }

    pub fn rejected(&self, reason: Rejection) {
        self.rejections
            .get_or_create(&RejectionLabels {
                reason: reason.name(),
            })
            .inc();
    }

    pub fn observe(&self, store: Store, took: Duration, ok: bool) {
        let labels = StoreLabels {
            store: store.name(),
        };
        self.query_seconds
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        if !ok {
            self.failures.get_or_create(&labels).inc();
        }
    }
}
