use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Default)]
pub struct ProducerMetrics {
    pub generated: Counter,
    pub sent: Counter,
    pub dropped: Counter,
    pub rejected: Counter,
    pub send_failures: Counter,
    pub buffered: Gauge,
}

impl ProducerMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "events_generated",
            "Events generated",
            metrics.generated.clone(),
        );
        registry.register(
            "events_sent",
            "Events acknowledged by event-api",
            metrics.sent.clone(),
        );
        registry.register(
            "events_dropped",
            "Events dropped because the buffer was full or the drain timed out",
            metrics.dropped.clone(),
        );
        registry.register(
            "events_rejected",
            "Events in batches event-api rejected as invalid (not retried)",
            metrics.rejected.clone(),
        );
        registry.register(
            "send_failures",
            "Requests that failed and will be retried",
            metrics.send_failures.clone(),
        );
        registry.register(
            "events_buffered",
            "Events waiting to be sent",
            metrics.buffered.clone(),
        );
        metrics
    }
}
