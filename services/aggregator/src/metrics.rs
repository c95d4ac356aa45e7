//! The aggregator's request-side figures, beside the shared HTTP request
//! counters: refusals by reason and open streams. The stores' query figures
//! are the stores module's own (`stores::QueryMetrics`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

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

#[derive(Clone)]
pub struct ApiMetrics {
    rejections: Family<RejectionLabels, Counter>,
    pub stream_clients: Gauge,
}

impl ApiMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            rejections: Family::default(),
            stream_clients: Gauge::default(),
        };
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
}
