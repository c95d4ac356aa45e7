use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// An InfluxDB 1.x server with its data in a temporary directory; killed and
/// removed when dropped.
pub struct InfluxDb {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl InfluxDb {
    pub fn start() -> Self {
        let mut influx = Self {
            dir: crate::temp_dir("influxdb"),
            port: crate::free_port(),
            child: None,
        };
        influx.restart();
        influx
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Kills the server, as a crash would.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server (again) and waits until it answers `/ping`.
    pub fn restart(&mut self) {
        self.stop();
        let mut child = Command::new("influxd")
            .arg("run")
            .env("INFLUXDB_DATA_DIR", self.dir.join("data"))
            .env("INFLUXDB_META_DIR", self.dir.join("meta"))
            .env("INFLUXDB_DATA_WAL_DIR", self.dir.join("wal"))
            .env(
                "INFLUXDB_HTTP_BIND_ADDRESS",
                format!("127.0.0.1:{}", self.port),
            )
            .env(
                "INFLUXDB_BIND_ADDRESS",
                format!("127.0.0.1:{}", crate::free_port()),
            )
            .env("INFLUXDB_REPORTING_DISABLED", "true")
            .env("INFLUXDB_HTTP_LOG_ENABLED", "false")
            .env("INFLUXDB_DATA_QUERY_LOG_ENABLED", "false")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start influxd (run scripts/install.sh)");
        crate::wait_for_port(self.port, &mut child, "influxd", Duration::from_secs(30));
        self.child = Some(child);
    }

    /// Runs an InfluxQL query against `database`; the JSON answer.
    pub async fn query(&self, database: &str, influxql: &str) -> serde_json::Value {
        reqwest::Client::new()
            .post(format!("{}/query", self.url()))
            .form(&[("db", database), ("q", influxql)])
            .send()
            .await
            .expect("InfluxDB answers")
            .json()
            .await
            .expect("InfluxDB answers JSON")
    }
}

impl Drop for InfluxDb {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
