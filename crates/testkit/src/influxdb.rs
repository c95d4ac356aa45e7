use std::process::Command;
use std::time::Duration;

use crate::process::ServerProcess;

/// An InfluxDB 1.x server with its data in a temporary directory; killed and
/// removed when dropped.
pub struct InfluxDb {
    server: ServerProcess,
}

impl InfluxDb {
    pub fn start() -> Self {
        let mut influx = Self {
            server: ServerProcess::new("influxd"),
        };
        influx.restart();
        influx
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.server.port)
    }

    /// Kills the server, as a crash would.
    pub fn stop(&mut self) {
        self.server.kill();
    }

    /// Starts the server (again) and waits until it listens.
    pub fn restart(&mut self) {
        let dir = &self.server.dir;
        let mut command = Command::new("influxd");
        command
            .arg("run")
            .env("INFLUXDB_DATA_DIR", dir.join("data"))
            .env("INFLUXDB_META_DIR", dir.join("meta"))
            .env("INFLUXDB_DATA_WAL_DIR", dir.join("wal"))
            .env(
                "INFLUXDB_HTTP_BIND_ADDRESS",
                format!("127.0.0.1:{}", self.server.port),
            )
            .env(
                "INFLUXDB_BIND_ADDRESS",
                format!("127.0.0.1:{}", crate::free_port()),
            )
            .env("INFLUXDB_REPORTING_DISABLED", "true")
            .env("INFLUXDB_HTTP_LOG_ENABLED", "false")
            .env("INFLUXDB_DATA_QUERY_LOG_ENABLED", "false");
        self.server.start(command, Duration::from_secs(30));
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
