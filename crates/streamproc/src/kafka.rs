//! Kafka client setup shared by the services. Only standard Kafka protocol
//! features are used, so the same code runs against tansu locally and
//! Apache Kafka in a cluster.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

#[derive(Debug, thiserror::Error)]
pub enum KafkaSetupError {
    #[error("cannot create a Kafka client for {brokers}: {source}")]
    Client { brokers: String, source: KafkaError },
    #[error("cannot create topic {topic:?}: {reason}")]
    CreateTopic { topic: String, reason: String },
    #[error("Kafka did not answer within {timeout:?}: {reason}")]
    Unreachable { timeout: Duration, reason: String },
}

fn base_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        // Brokers advertised as "localhost" may resolve to ::1 first; prefer
        // IPv4 so a broker that listens on 127.0.0.1 is found at once.
        .set("broker.address.family", "v4");
    config
}

/// A producer that never acknowledges an event Kafka could lose: idempotent
/// (so librdkafka's own retries do not duplicate records) with acks=all.
/// `delivery_timeout` bounds how long a send may wait for an acknowledgement,
/// retries included, before it is reported as failed.
pub fn reliable_producer(
    brokers: &str,
    delivery_timeout: Duration,
) -> Result<FutureProducer, KafkaSetupError> {
    base_config(brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set(
            "message.timeout.ms",
            delivery_timeout.as_millis().to_string(),
        )
        .set("linger.ms", "5")
        .create()
        .map_err(|source| KafkaSetupError::Client {
            brokers: brokers.to_owned(),
            source,
        })
}

/// Creates `topic` unless it exists already. Brokers may not auto-create
/// topics (tansu with SQLite storage does not), so services that write make
/// sure the topic is there.
pub async fn ensure_topic(
    brokers: &str,
    topic: &str,
    partitions: i32,
    replication: i32,
    timeout: Duration,
) -> Result<(), KafkaSetupError> {
    let admin: AdminClient<DefaultClientContext> =
        base_config(brokers)
            .create()
            .map_err(|source| KafkaSetupError::Client {
                brokers: brokers.to_owned(),
                source,
            })?;
    let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication));
    let options = AdminOptions::new()
        .request_timeout(Some(timeout))
        .operation_timeout(Some(timeout));
    let create_error = |reason: String| KafkaSetupError::CreateTopic {
        topic: topic.to_owned(),
        reason,
    };
    let results = admin
        .create_topics([&new_topic], &options)
        .await
        .map_err(|e| create_error(e.to_string()))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(create_error(code.to_string())),
        }
    }
    Ok(())
}

/// Asks the cluster for the topic's metadata: the readiness check of every
/// service that talks to Kafka.
pub async fn check_reachable(
    producer: &FutureProducer,
    topic: &str,
    timeout: Duration,
) -> Result<(), KafkaSetupError> {
    let producer = producer.clone();
    let topic = topic.to_owned();
    // fetch_metadata blocks its thread until the broker answers.
    let answer = tokio::task::spawn_blocking(move || {
        producer
            .client()
            .fetch_metadata(Some(&topic), timeout)
            .map(|metadata| {
                metadata
                    .topics()
                    .iter()
                    .any(|t| t.name() == topic && t.error().is_none())
            })
    })
    .await;
    let unreachable = |reason: String| KafkaSetupError::Unreachable { timeout, reason };
    match answer {
        Ok(Ok(true)) => Ok(()),
        Ok(Ok(false)) => Err(unreachable("the topic does not exist yet".into())),
        Ok(Err(e)) => Err(unreachable(e.to_string())),
        Err(e) => Err(unreachable(e.to_string())),
    }
}
