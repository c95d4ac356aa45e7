//! The aggregator's request-side figures, beside the shared HTTP request
//! counters: refusals by reason, open streams and why streams ended. The stores' query figures
//! are the stores module's own (`stores::QueryMetrics`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Why a request was refused with 503 before or instead of its answer.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Rejection {
    /// MAX_QUERIES queries were being answered.
    Queries,
    /// No answer within REQUEST_TIMEOUT.
    Timeout,
}

impl Rejection {
    fn name(self) -> &'static str {
        match self {
            Self::Queries => "queries",
            Self::Timeout => "timeout",
        }
    }
}

/// Why the server ended a stream (a client hanging up is not counted).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum StreamEnd {
    /// MAX_STREAMS were open and a newer stream took its place.
    Evicted,
    /// It was open for STREAM_MAX_AGE.
    MaxAge,
}

impl StreamEnd {
    fn name(self) -> &'static str {
        match self {
            Self::Evicted => "evicted",
            Self::MaxAge => "max_age",
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
    streams_ended: Family<RejectionLabels, Counter>,
}

impl ApiMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            rejections: Family::default(),
            stream_clients: Gauge::default(),
            streams_ended: Family::default(),
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
        registry.register(
            "streams_ended",
            "/api/v1/stream connections the server ended, by reason: evicted (MAX_STREAMS were \
             open and a newer stream took the place) or max_age (STREAM_MAX_AGE)",
            metrics.streams_ended.clone(),
        );
        metrics
    }

    pub fn stream_ended(&self, why: StreamEnd) {
        self.streams_ended
            .get_or_create(&RejectionLabels { reason: why.name() })
            .inc();
    }

    pub fn rejected(&self, reason: Rejection) {
        self.rejections
            .get_or_create(&RejectionLabels {
                reason: reason.name(),
            })
            .inc();
    }
}
