//! The Kafka side of one probe: the topic's watermarks, the dead-letter
//! topic's, and where each consumer group stands. Everything comes from the
//! broker (see `streamproc_kafka::offsets`), so the figures cover every replica of
//! a consumer, wherever it runs.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::BaseConsumer;
use streamproc_kafka::offsets::{self, GroupPosition, OffsetsError, PartitionEnds, QuietContext};
use streamproc_kit::error::Chain;

use super::config::PipelineArgs;
use super::failure::Failure;

type Reader = BaseConsumer<QuietContext>;

/// What Kafka answered in one probe.
#[derive(Debug, Clone)]
pub struct KafkaSample {
    /// The events topic's partitions, or why they are unknown.
    pub ends: Result<Vec<PartitionEnds>, Failure>,
    /// Records ever written to the dead-letter topic (0 before the first:
    /// the consumers create it then).
    pub dead_lettered: Option<i64>,
    /// Each group's position, in the order the groups were given to
    /// [`KafkaProbe::new`].
    pub groups: Vec<Result<Vec<GroupPosition>, Failure>>,
}

pub struct KafkaProbe {
    topic: String,
    dead_letter_topic: String,
    /// One reader per group: a client reads the committed offsets of its
    /// own `group.id` only.
    readers: Vec<Arc<Reader>>,
    timeout: Duration,
}

impl KafkaProbe {
    /// Clients are created at once and connect on first use, so the
    /// aggregator starts while the broker is down.
    pub fn new(args: &PipelineArgs, groups: &[&str], timeout: Duration) -> anyhow::Result<Self> {
        let brokers = args.kafka.bootstrap_servers();
        let readers = groups
            .iter()
            .map(|group| offsets::group_reader(&brokers, group).map(Arc::new))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            topic: args.kafka.kafka_topic.clone(),
            dead_letter_topic: args.kafka_dlq_topic.clone(),
            readers,
            timeout,
        })
    }

    /// A probe of consumer-high's group, then consumer-low's.
    pub fn for_consumers(args: &PipelineArgs, timeout: Duration) -> anyhow::Result<Self> {
        Self::new(
            args,
            &[&args.consumer_high_group, &args.consumer_low_group],
            timeout,
        )
    }

    pub async fn sample(&self) -> KafkaSample {
        let readers = self.readers.clone();
        let (topic, dead_letter_topic) = (self.topic.clone(), self.dead_letter_topic.clone());
        let timeout = self.timeout;
        let groups = readers.len();
        // librdkafka's calls block their thread until the broker answers.
        tokio::task::spawn_blocking(move || {
            sample_blocking(&readers, &topic, &dead_letter_topic, timeout)
        })
        .await
        .unwrap_or_else(|error| {
            let reason = Failure::of("the Kafka probe failed", &error);
            KafkaSample {
                ends: Err(reason.clone()),
                dead_lettered: None,
                groups: vec![Err(reason); groups],
            }
        })
    }
}

fn sample_blocking(
    readers: &[Arc<Reader>],
    topic: &str,
    dead_letter_topic: &str,
    timeout: Duration,
) -> KafkaSample {
    for reader in readers {
        // Serves the client's queued events (errors, logs), which would
        // otherwise pile up while nobody polls a consumer that never
        // subscribes. Bounded: a reader has no messages to return.
        for _ in 0..100 {
            if reader.poll(Duration::ZERO).is_none() {
                break;
            }
        }
    }
    let Some(first) = readers.first() else {
        return KafkaSample {
            ends: Err("no consumer group to watch".into()),
            dead_lettered: None,
            groups: Vec::new(),
        };
    };
    let ends = match offsets::topic_ends(first.as_ref(), topic, timeout) {
        Ok(ends) => ends,
        Err(error) => {
            // Nothing else can be answered when the topic cannot.
            let reason = match error {
                OffsetsError::NoTopic(topic) => {
                    format!("topic {topic:?} does not exist (event-api creates it when it starts)")
                }
                error => Failure::of("does not answer", &error).to_string(),
            };
            return KafkaSample {
                ends: Err(reason.into()),
                dead_lettered: None,
                groups: vec![Err("Kafka does not answer".into()); readers.len()],
            };
        }
    };
    let dead_lettered = match offsets::topic_ends(first.as_ref(), dead_letter_topic, timeout) {
        Ok(dead) => Some(dead.iter().map(|p| p.high).sum()),
        Err(OffsetsError::NoTopic(_)) => Some(0),
        Err(error) => {
            tracing::debug!(
                topic = dead_letter_topic,
                error = %Chain(&error),
                "dead-letter topic unreadable"
            );
            None
        }
    };
    let groups = readers
        .iter()
        .map(|reader| {
            offsets::group_positions(reader.as_ref(), topic, &ends, timeout)
                .map_err(|e| Failure::from_error(&e))
        })
        .collect();
    KafkaSample {
        ends: Ok(ends),
        dead_lettered,
        groups,
    }
}
