//! The consumer's librdkafka context: per-partition lag from librdkafka's
//! statistics, rebalances and errors in the log, and the assignment for
//! the offsets owed (committed on revocation, see `commit`).

use std::sync::Arc;

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;
use rdkafka::TopicPartitionList;

use super::commit::Owed;
use super::metrics::PartitionLabels;

pub struct StatsContext {
    lag: Family<PartitionLabels, Gauge>,
    topic: String,
    /// Committed on revocation, before the partitions go to another member.
    owed: Arc<Owed>,
}

impl StatsContext {
    pub fn new(lag: Family<PartitionLabels, Gauge>, topic: String, owed: Arc<Owed>) -> Self {
        Self { lag, topic, owed }
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
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            let revoked = numbers(partitions);
            self.owed.revoke(consumer, &revoked);
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => {
                let assigned = numbers(partitions);
                self.owed.assign(&assigned);
                tracing::info!(partitions = ?assigned, "partitions assigned");
            }
            Rebalance::Revoke(partitions) => {
                let revoked = numbers(partitions);
                tracing::info!(partitions = ?revoked, "partitions revoked");
            }
            Rebalance::Error(error) => tracing::warn!(error = %error, "rebalance failed"),
        }
    }
}

fn numbers(partitions: &TopicPartitionList) -> Vec<i32> {
    partitions
        .elements()
        .iter()
        .map(|p| p.partition())
        .collect()
}
