use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use streamproc_event::names;
use streamproc_kit::metrics::latency_histogram;

/// event-api's own figures, beside the shared HTTP request counters.
#[derive(Clone)]
pub struct ApiMetrics {
    pub events_accepted: Counter,
    pub events_rejected: Counter,
    pub events_in_flight: Gauge,
    pub kafka_ack_seconds: Histogram,
    pub kafka_failures: Counter,
    pub requests_shed: Counter,
    pub body_timeouts: Counter,
    pub request_timeouts: Counter,
}

impl ApiMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            events_accepted: Counter::default(),
            events_rejected: Counter::default(),
            events_in_flight: Gauge::default(),
            kafka_ack_seconds: latency_histogram(),
            kafka_failures: Counter::default(),
            requests_shed: Counter::default(),
            body_timeouts: Counter::default(),
            request_timeouts: Counter::default(),
        };
        registry.register(
            names::EVENTS_ACCEPTED_METRIC,
            "Events acknowledged by Kafka and answered 200",
            metrics.events_accepted.clone(),
        );
        registry.register(
            names::EVENTS_REJECTED_METRIC,
            "Invalid events in batches answered 400",
            metrics.events_rejected.clone(),
        );
        registry.register(
            "events_in_flight",
            "Events waiting for Kafka's acknowledgement",
            metrics.events_in_flight.clone(),
        );
        registry.register(
            "kafka_ack_seconds",
            "Time from sending a request's events to Kafka's last acknowledgement",
            metrics.kafka_ack_seconds.clone(),
        );
        registry.register(
            "kafka_failures",
            "Requests answered 503 because Kafka did not acknowledge",
            metrics.kafka_failures.clone(),
        );
        registry.register(
            "requests_shed",
            "Ingest requests answered 503 because MAX_CONCURRENT_REQUESTS were in progress",
            metrics.requests_shed.clone(),
        );
        registry.register(
            "body_timeouts",
            "Ingest requests answered 408 because the body took longer than BODY_READ_TIMEOUT",
            metrics.body_timeouts.clone(),
        );
        registry.register(
            "request_timeouts",
            "Ingest requests answered 503 because they took longer than REQUEST_TIMEOUT",
            metrics.request_timeouts.clone(),
        );
        metrics
    }
}
