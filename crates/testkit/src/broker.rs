use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A tansu broker process with SQLite storage in a temporary directory:
/// topics, records and committed offsets survive [`Tansu::restart`]. Killed
/// and removed when dropped.
///
/// Not tansu's memory storage: in 0.6.0 a fetch that starts inside a record
/// batch skips the rest of that batch there, so a consumer resuming from a
/// committed offset (after a restart or a rebalance) would miss records.
/// SQLite storage answers such fetches correctly.
pub struct Tansu {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
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
            port: crate::free_port(),
            dir: crate::temp_dir("tansu"),
            child: None,
        };
        broker.restart();
        broker
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the broker (as a crash would).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker again on the same port and waits until it accepts
    /// connections.
    pub fn restart(&mut self) {
        self.stop();
        let bin = tansu_bin();
        assert!(
            bin.exists(),
            "tansu not found at {} (run scripts/install.sh, or set TANSU_BIN)",
            bin.display()
        );
        let listener = format!("tcp://127.0.0.1:{}", self.port);
        let mut command = Command::new(&bin);
        command
            .arg("broker")
            .arg("--listener-url")
            .arg(&listener)
            .arg("--advertised-listener-url")
            .arg(&listener)
            .env_remove("STORAGE_ENGINE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // tansu resolves the SQLite path against its working directory.
        command
            .current_dir(&self.dir)
            .arg("--storage-engine")
            .arg("sqlite://tansu.db");
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        crate::wait_for_port(self.port, &mut child, "tansu", Duration::from_secs(20));
        self.child = Some(child);
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

impl Drop for Tansu {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
