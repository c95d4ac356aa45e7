use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use streamproc_kit::metrics::latency_histogram;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub partition: i32,
}

/// What the consume loop counts.
#[derive(Clone)]
pub struct ConsumerMetrics {
    pub consumed: Counter,
    pub written: Counter,
    pub skipped: Counter,
    pub dead_lettered: Counter,
    pub write_failures: Counter,
    pub write_rejections: Counter,
    pub stalled_seconds: Gauge,
    pub commits: Counter,
    pub rejoins: Counter,
    pub batch_events: Histogram,
    pub write_seconds: Histogram,
    pub record_wait_seconds: Histogram,
    pub lag: Family<PartitionLabels, Gauge>,
    pub waited_on_store: Counter<f64, AtomicU64>,
    pub waited_for_records: Counter<f64, AtomicU64>,
}

impl ConsumerMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            consumed: Counter::default(),
            written: Counter::default(),
            skipped: Counter::default(),
            dead_lettered: Counter::default(),
            write_failures: Counter::default(),
            write_rejections: Counter::default(),
            stalled_seconds: Gauge::default(),
            commits: Counter::default(),
            rejoins: Counter::default(),
            batch_events: Histogram::new(exponential_buckets(1.0, 4.0, 8)),
            write_seconds: latency_histogram(),
            record_wait_seconds: latency_histogram(),
            lag: Family::default(),
            waited_on_store: Counter::default(),
            waited_for_records: Counter::default(),
        };
        registry.register(
            "events_consumed",
            "Records read from the topic",
            metrics.consumed.clone(),
        );
        registry.register(
            "events_written",
            "Events written to the sink",
            metrics.written.clone(),
        );
        registry.register(
            "events_skipped",
            "Records the other consumer owns: valid events routed to the other store, and invalid records whose dead letter it writes",
            metrics.skipped.clone(),
        );
        registry.register(
            "events_dead_lettered",
            "Records sent to the dead-letter topic",
            metrics.dead_lettered.clone(),
        );
        registry.register(
            "sink_write_failures",
            "Sink writes that failed and were retried",
            metrics.write_failures.clone(),
        );
        registry.register(
            "sink_write_rejections",
            "Sink writes the store refused for their data; each splits the write",
            metrics.write_rejections.clone(),
        );
        registry.register(
            "consumer_stalled_seconds",
            "How long the batch in hand has failed to be stored (0 while storing)",
            metrics.stalled_seconds.clone(),
        );
        registry.register(
            "offset_commits",
            "Offset commits that succeeded",
            metrics.commits.clone(),
        );
        registry.register(
            "consumer_rejoins",
            "Times this member left and rejoined its group because it had no \
             partition while records waited and nobody committed",
            metrics.rejoins.clone(),
        );
        registry.register(
            "batch_events",
            "Events per sink write",
            metrics.batch_events.clone(),
        );
        registry.register(
            "sink_write_seconds",
            "Time of one successful sink write",
            metrics.write_seconds.clone(),
        );
        registry.register(
            "record_wait_seconds",
            "Time from a record's Kafka timestamp until this consumer read it: \
             the broker, the fetch wait and any backlog",
            metrics.record_wait_seconds.clone(),
        );
        registry.register(
            "consumer_lag",
            "Records behind the end of each partition (librdkafka statistics)",
            metrics.lag.clone(),
        );
        registry.register(
            "consumer_waited_on_store_seconds",
            "Time the loop had the next batch read and waited for the store to \
             take the one before: under a backlog, the store is the bound",
            metrics.waited_on_store.clone(),
        );
        registry.register(
            "consumer_waited_for_records_seconds",
            "Time the loop had a batch stored and waited for the next one's \
             records: under a backlog, the broker is the bound",
            metrics.waited_for_records.clone(),
        );
        metrics
    }

    /// Counts what one turn of the loop waited on.
    pub fn waited(&self, on_store: Duration, for_records: Duration) {
        self.waited_on_store.inc_by(on_store.as_secs_f64());
        self.waited_for_records.inc_by(for_records.as_secs_f64());
    }
}
