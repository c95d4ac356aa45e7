//! Reading a topic from offsets of one's choosing, outside any consumer
//! group: the client is assigned partitions, never subscribes and never
//! commits, so it cannot take partitions from a group's members or move a
//! group's offsets. The aggregator reads the dead-letter topic this way.

use std::time::Duration;

use rdkafka::consumer::StreamConsumer;

use crate::offsets::QuietContext;
use crate::producer::{base_config, KafkaSetupError};

/// A client that reads by assignment. `name` becomes its `group.id`, which
/// librdkafka requires of a consumer but which is never joined.
/// `fetch_wait_max` bounds how long an empty fetch is held (tansu holds
/// every fetch that long, records or not: keep it small there);
/// `read_ahead_kbytes` how much librdkafka fetches ahead of the caller
/// (its own default is 64 MiB).
pub fn assigned_reader(
    brokers: &str,
    name: &str,
    fetch_wait_max: Duration,
    read_ahead_kbytes: u32,
) -> Result<StreamConsumer<QuietContext>, KafkaSetupError> {
    base_config(brokers)
        .set("group.id", name)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("queued.max.messages.kbytes", read_ahead_kbytes.to_string())
        .set(
            "fetch.wait.max.ms",
            fetch_wait_max.as_millis().clamp(1, 300_000).to_string(),
        )
        .create_with_context(QuietContext)
        .map_err(|source| KafkaSetupError::Client {
            brokers: brokers.to_owned(),
            source,
        })
}
