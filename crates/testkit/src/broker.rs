use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::process::ServerProcess;

/// A tansu broker process with SQLite storage in a temporary directory:
/// topics, records and committed offsets survive [`Tansu::restart`]. Killed
/// and removed when dropped.
///
/// Not tansu's memory storage: in 0.6.0 a fetch that starts inside a record
/// batch skips the rest of that batch there, so a consumer resuming from a
/// committed offset (after a restart or a rebalance) would miss records.
/// SQLite storage answers such fetches correctly.
pub struct Tansu {
    server: ServerProcess,
}

/// The tansu binary: `$TANSU_BIN`, else where `scripts/install.sh` caches it.
pub fn tansu_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("TANSU_BIN") {
        return PathBuf::from(bin);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    Path::new(&home).join(".cache/streamproc/tansu-0.6.0/bin/tansu")
}

impl Tansu {
    pub fn start() -> Self {
        let mut broker = Self {
            server: ServerProcess::new("tansu"),
        };
        broker.restart();
        broker
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.server.port)
    }

    /// Kills the broker (as a crash would).
    pub fn stop(&mut self) {
        self.server.kill();
    }

    /// Starts the broker (again) on the same port and waits until it accepts
    /// connections.
    pub fn restart(&mut self) {
        let bin = tansu_bin();
        assert!(
            bin.exists(),
            "tansu not found at {} (run scripts/install.sh, or set TANSU_BIN)",
            bin.display()
        );
        let listener = format!("tcp://127.0.0.1:{}", self.server.port);
        let mut command = Command::new(&bin);
        command
            .arg("broker")
            .args(["--listener-url", &listener])
            .args(["--advertised-listener-url", &listener])
            // tansu resolves the SQLite path against its working directory.
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(&self.server.dir);
        self.server.start(command, Duration::from_secs(20));
    }

    /// The offsets `group` has committed on partitions `0..partitions` of
    /// `topic`, read back from the broker; 0 where nothing is committed.
    pub async fn committed_offsets(&self, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.brokers())
            .set("broker.address.family", "v4")
            .set("group.id", group)
            .create()
            .expect("cannot create the offsets reader");
        let mut wanted = TopicPartitionList::new();
        for partition in 0..partitions {
            wanted
                .add_partition_offset(topic, partition, Offset::Invalid)
                .expect("valid partition");
        }
        let committed = tokio::task::spawn_blocking(move || {
            consumer.committed_offsets(wanted, Duration::from_secs(10))
        })
        .await
        .expect("offsets reader panicked")
        .unwrap_or_else(|e| panic!("cannot read the committed offsets of {group}: {e}"));
        let mut offsets: Vec<(i32, i64)> = committed
            .elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(n) => (e.partition(), n),
                _ => (e.partition(), 0),
            })
            .collect();
        offsets.sort_unstable();
        offsets.into_iter().map(|(_, offset)| offset).collect()
    }

    /// How many partitions `topic` has; 0 when the broker does not know it.
    pub async fn partitions(&self, topic: &str) -> i32 {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.brokers())
            .set("broker.address.family", "v4")
            .create()
            .expect("cannot create the metadata reader");
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || {
            let metadata = consumer
                .fetch_metadata(Some(&topic), Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("cannot fetch the metadata of {topic}: {e}"));
            metadata
                .topics()
                .iter()
                .find(|t| t.name() == topic)
                .map_or(0, |t| t.partitions().len() as i32)
        })
        .await
        .expect("metadata reader panicked")
    }

    /// Waits until `group` has committed offsets on `topic` that add up to
    /// at least `records`: with every partition starting at offset 0, the
    /// group has then read, stored and committed that many records, so a
    /// consumer that commits only after its writes has nothing more to
    /// write. The positive signal to wait for before asserting that nothing
    /// more arrives. False if that does not happen within `timeout`.
    pub async fn wait_committed(
        &self,
        group: &str,
        topic: &str,
        records: usize,
        timeout: Duration,
    ) -> bool {
        let partitions = self.partitions(topic).await;
        assert!(partitions > 0, "topic {topic} has no partitions");
        crate::eventually(timeout, || async {
            let committed = self.committed_offsets(group, topic, partitions).await;
            committed.iter().sum::<i64>() >= records as i64
        })
        .await
    }

    /// Creates a topic and waits until the broker serves it.
    pub async fn create_topic(&self, topic: &str, partitions: i32) {
        streamproc_kafka::producer::ensure_topic(
            &self.brokers(),
            topic,
            partitions,
            1,
            Duration::from_secs(10),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    }
}
