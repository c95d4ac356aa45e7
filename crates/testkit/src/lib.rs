//! Test support shared by the services' integration tests.
//!
//! Every test gets its own real broker (tansu), PostgreSQL with TimescaleDB
//! and InfluxDB, each on a free loopback port with its state in a temporary
//! directory, so tests run in parallel, can stop a component to see what
//! happens, and never touch a local stack a developer has running.

mod broker;
pub mod guarantees;
mod influxdb;
mod postgres;
mod process;
mod service;
mod topic;

pub use broker::Tansu;
pub use influxdb::InfluxDb;
pub use postgres::Postgres;
pub use service::{produce_until_all_busy, InProcess};
pub use topic::{event_record, produce, read_topic, Record};

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A fresh directory under the system's temporary directory.
pub fn temp_dir(prefix: &str) -> PathBuf {
    // A new directory each time: process ids are reused, and a test killed
    // before its cleanup leaves its directory behind.
    static NEXT: AtomicU64 = AtomicU64::new(0);
    loop {
        let dir = std::env::temp_dir().join(format!(
            "streamproc-{prefix}-{}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            free_port()
        ));
        match std::fs::create_dir(&dir) {
            Ok(()) => return dir,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => panic!("cannot create {}: {e}", dir.display()),
        }
    }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot find a free loopback port")
}

/// A loopback TCP peer that accepts connections and never answers, like a
/// hung broker: clients connect, then wait until their own timeouts. Returns
/// its `host:port`; it lives until the test process ends.
pub fn unresponsive_peer() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("cannot bind a loopback port");
    let address = listener.local_addr().expect("bound address").to_string();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    address
}

/// Waits until something listens on `port`; panics naming `what` when
/// `child` exits first or `timeout` passes.
pub fn wait_for_port(port: u16, child: &mut std::process::Child, what: &str, timeout: Duration) {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited at start with {status}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not listen on port {port} within {timeout:?}");
}

/// Polls `check` every 100 ms until it returns true or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `events` as a consumer hands them to its sink: read from partition 0 at
/// offsets `first`, `first + 1`, …
pub fn logged(
    first: i64,
    events: impl IntoIterator<Item = streamproc_event::Event>,
) -> Vec<streamproc_event::LoggedEvent> {
    (first..)
        .zip(events)
        .map(|(offset, event)| streamproc_event::LoggedEvent {
            event,
            position: streamproc_event::LogPosition {
                partition: 0,
                offset,
            },
        })
        .collect()
}
