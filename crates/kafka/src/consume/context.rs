//! The consumer's librdkafka context: per-partition lag from librdkafka's
//! statistics, and rebalances and errors in the log.

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;

use super::metrics::PartitionLabels;

pub struct StatsContext {
    lag: Family<PartitionLabels, Gauge>,
    topic: String,
}

impl StatsContext {
    pub fn new(lag: Family<PartitionLabels, Gauge>, topic: String) -> Self {
        Self { lag, topic }
    }
}

impl ClientContext for StatsContext {
    fn stats(&self, statistics: Statistics) {
        let Some(topic) = statistics.topics.get(&self.topic) else {
            return;
        };
        for (&partition, stats) in &topic.partitions {
            // librdkafka reports -1 for unknown lag and for its internal
            // "unassigned" partition (-1).
            if partition >= 0 && stats.consumer_lag >= 0 {
                self.lag
                    .get_or_create(&PartitionLabels { partition })
                    .set(stats.consumer_lag);
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(error = %error, reason, "kafka client error");
    }
}

impl ConsumerContext for StatsContext {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => {
                let assigned: Vec<_> = partitions
                    .elements()
                    .iter()
                    .map(|p| p.partition())
                    .collect();
                tracing::info!(partitions = ?assigned, "partitions assigned");
            }
            Rebalance::Revoke(partitions) => {
                let revoked: Vec<_> = partitions
                    .elements()
                    .iter()
                    .map(|p| p.partition())
                    .collect();
                tracing::info!(partitions = ?revoked, "partitions revoked");
            }
            Rebalance::Error(error) => tracing::warn!(error = %error, "rebalance failed"),
        }
    }
}
