//! The stores' query figures: time to answer and failures, by store.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use streamproc_kit::metrics::latency_histogram;

use super::Store;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabels {
    store: &'static str,
}

#[derive(Clone)]
pub struct QueryMetrics {
    query_seconds: Family<StoreLabels, Histogram>,
    failures: Family<StoreLabels, Counter>,
}

impl QueryMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            query_seconds: Family::new_with_constructor(latency_histogram),
            failures: Family::default(),
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
        metrics
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
