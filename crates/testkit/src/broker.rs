use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

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

    /// Creates a topic and waits until the broker serves it.
    pub async fn create_topic(&self, topic: &str, partitions: i32) {
        streamproc::kafka::ensure_topic(
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
