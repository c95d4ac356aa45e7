//! What `/api/v1/pipeline` and the stream's `pipeline` events carry: every
//! stage in pipeline order with its status, the reason in words when it is
//! not ok, and its figures; and the recent periods when a stage was not ok.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Working, but behind or partly failing.
    Degraded,
    /// Not working.
    Down,
}

/// The stages, in pipeline order.
pub const STAGES: [&str; 6] = [
    "event-api",
    "kafka",
    "consumer-high",
    "consumer-low",
    "timescaledb",
    "influxdb",
];

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stage {
    pub name: &'static str,
    pub status: Status,
    /// Why it is not ok, in words; `None` (null) when ok.
    pub reason: Option<String>,
    /// event-api: events accepted; kafka: records written to the topic;
    /// a consumer: events its store stored (by event time); a store: none.
    pub events_per_second: Option<f64>,
    /// Consumers only: records after the group's committed offsets.
    pub lag_events: Option<i64>,
    /// Consumers only: since the oldest of those arrived.
    pub lag_seconds: Option<f64>,
    pub figures: Figures,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Figures {
    EventApi {
        /// Addresses probed (replicas, behind a headless Service).
        replicas: usize,
        ready: usize,
        accepted_per_second: Option<f64>,
        rejected_per_second: Option<f64>,
        /// Ingest requests answered 429 or 503 per second.
        shed_per_second: Option<f64>,
    },
    Kafka {
        topic: String,
        partitions: Vec<PartitionFigures>,
        /// Records ever written to the topic.
        records: Option<i64>,
        dead_letter_topic: String,
        dead_lettered: Option<i64>,
        dead_lettered_per_second: Option<f64>,
    },
    Consumer {
        group: String,
        partitions: Vec<GroupFigures>,
        /// Records the group committed per second (all of the topic: each
        /// consumer reads every record and skips the other store's).
        records_per_second: Option<f64>,
    },
    Store {
        latency_ms: Option<f64>,
        stored_per_second: Option<f64>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PartitionFigures {
    pub partition: i32,
    pub low: i64,
    pub high: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct GroupFigures {
    pub partition: i32,
    pub committed: Option<i64>,
    pub lag: i64,
}

/// A time a stage was degraded or down.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Period {
    pub stage: &'static str,
    pub status: Status,
    /// The latest reason given during the period.
    pub reason: String,
    /// Unix ms.
    pub from: i64,
    /// Unix ms; `None` (null) while it lasts.
    pub to: Option<i64>,
}

/// The thresholds in force, so that a reader knows what "degraded" meant.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Thresholds {
    pub lag_events: u64,
    pub lag_seconds: f64,
    pub stall_seconds: f64,
    pub slow_store_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    /// When the probe ran (Unix ms).
    pub time: i64,
    /// The worst stage's status.
    pub status: Status,
    /// "stage: reason" for every stage that is not ok, in pipeline order.
    pub problems: Vec<String>,
    pub stages: Vec<Stage>,
    pub periods: Vec<Period>,
    pub thresholds: Thresholds,
}
