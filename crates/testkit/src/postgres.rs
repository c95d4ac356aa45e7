use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// A PostgreSQL 15 cluster with TimescaleDB preloaded, in a temporary
/// directory; stopped and removed when dropped.
pub struct Postgres {
    dir: PathBuf,
    port: u16,
    timescale: bool,
}

fn pg_bin(tool: &str) -> PathBuf {
    let dir = std::env::var_os("PG_BIN").unwrap_or_else(|| "/usr/lib/postgresql/15/bin".into());
    PathBuf::from(dir).join(tool)
}

/// PostgreSQL refuses to run as root; run its tools as 'postgres' then.
fn as_postgres(tool: &str) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(pg_bin(tool));
        command
    } else {
        Command::new(pg_bin(tool))
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.starts_with(b"0\n"))
}

fn run(command: &mut Command, what: &str) {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Postgres {
    pub fn start() -> Self {
        Self::start_with(true)
    }

    /// Plain PostgreSQL, as a managed database without TimescaleDB would be.
    pub fn start_without_timescale() -> Self {
        Self::start_with(false)
    }

    fn start_with(timescale: bool) -> Self {
        assert!(
            pg_bin("initdb").exists(),
            "PostgreSQL 15 is not installed (run scripts/install.sh)"
        );
        let dir = crate::temp_dir("postgres");
        if is_root() {
            run(
                Command::new("chown").arg("postgres:postgres").arg(&dir),
                "chown",
            );
        }
        run(
            as_postgres("initdb").arg("-D").arg(dir.join("data")).args([
                "--username=postgres",
                "--auth=trust",
                "--no-sync",
            ]),
            "initdb",
        );
        let postgres = Self {
            dir,
            port: crate::free_port(),
            timescale,
        };
        postgres.restart();
        postgres
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server at once, as a crash would.
    pub fn stop(&self) {
        let _ = as_postgres("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }

    /// Starts the server (again) and waits until it takes connections.
    pub fn restart(&self) {
        let mut options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        if self.timescale {
            options.push_str(
                " -c shared_preload_libraries=timescaledb -c timescaledb.telemetry_level=off",
            );
        }
        run(
            as_postgres("pg_ctl")
                .arg("-D")
                .arg(self.dir.join("data"))
                .arg("-l")
                .arg(self.dir.join("postgres.log"))
                .args(["-w", "-t", "60", "-o", &options, "start"]),
            "pg_ctl start",
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            let ready = Command::new(pg_bin("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("PostgreSQL did not take connections on port {}", self.port);
    }

    /// Runs SQL with psql; its unaligned output, or its error.
    pub fn psql(&self, sql: &str) -> anyhow::Result<String> {
        psql_output(self.psql_command(sql).output()?)
    }

    /// As [`Postgres::psql`], without blocking the runtime. A test whose
    /// service runs in its own runtime (`InProcess`) must poll the store
    /// this way: on a current-thread runtime a blocking psql waiting on a
    /// lock the service holds (a migration's transaction) would keep the
    /// service from ever releasing it.
    pub async fn query(&self, sql: &str) -> anyhow::Result<String> {
        let mut command = tokio::process::Command::from(self.psql_command(sql));
        psql_output(command.output().await?)
    }

    fn psql_command(&self, sql: &str) -> Command {
        let mut command = Command::new(pg_bin("psql"));
        command
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args(["-d", "postgres", "-v", "ON_ERROR_STOP=1", "-qtAc", sql]);
        command
    }
}

fn psql_output(output: std::process::Output) -> anyhow::Result<String> {
    anyhow::ensure!(
        output.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
