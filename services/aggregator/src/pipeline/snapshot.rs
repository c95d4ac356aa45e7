//! What `/api/v1/pipeline` and the stream's `pipeline` events carry: every
//! stage in pipeline order with its status, the reason in words when it is
//! not ok, and its figures; and the recent periods when a stage was not ok.

use serde::Serialize;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
use utoipa::openapi::Ref;
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(description = "ok; degraded: working but behind or partly failing; down: not working")]
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

/// One stage of the pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Stage {
    #[schema(schema_with = stage_name)]
    pub name: &'static str,
    pub status: Status,
    /// Why it is not ok, in words ("12 400 events behind, 38 s"); null when
    /// ok.
    #[schema(required = true)]
    pub reason: Option<String>,
    /// event-api: events accepted; kafka: records written to the topic; a
    /// consumer: events its store stored (by event time); stores: null.
    /// Averaged over PIPELINE_RATE_WINDOW (10 s); null until two probes
    /// have it.
    #[schema(required = true)]
    pub events_per_second: Option<f64>,
    /// Consumers: records after the group's committed offsets; null for
    /// other stages or when Kafka does not answer.
    #[schema(required = true)]
    pub lag_events: Option<i64>,
    /// Consumers: seconds since the oldest of those records reached the
    /// topic (a lower bound when older than PIPELINE_HISTORY).
    #[schema(required = true)]
    pub lag_seconds: Option<f64>,
    /// The stage's own figures.
    pub figures: Figures,
}

/// A stage's own figures, by kind of stage.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(untagged)]
pub enum Figures {
    #[schema(title = "EventApiFigures")]
    EventApi {
        /// Addresses event-api's host resolves to, each probed (every
        /// replica behind a headless Service).
        replicas: usize,
        /// Of those, how many answered /readyz with 200.
        ready: usize,
        #[schema(required = true)]
        accepted_per_second: Option<f64>,
        /// Invalid events answered 400.
        #[schema(required = true)]
        rejected_per_second: Option<f64>,
        /// Ingest requests answered 429 or 503 per second.
        #[schema(required = true)]
        shed_per_second: Option<f64>,
    },
    #[schema(title = "KafkaFigures")]
    Kafka {
        topic: String,
        partitions: Vec<PartitionFigures>,
        /// Records ever written to the topic (sum of end offsets).
        #[schema(required = true)]
        records: Option<i64>,
        dead_letter_topic: String,
        /// Records in the dead-letter topic, from both consumers.
        #[schema(required = true)]
        dead_lettered: Option<i64>,
        #[schema(required = true)]
        dead_lettered_per_second: Option<f64>,
    },
    #[schema(title = "ConsumerFigures")]
    Consumer {
        group: String,
        partitions: Vec<GroupFigures>,
        /// Records the group committed per second (all of the topic: each
        /// consumer reads every record and skips the other store's).
        #[schema(required = true)]
        records_per_second: Option<f64>,
        /// Addresses the consumer's host resolves to (CONSUMER_HIGH_URL,
        /// CONSUMER_LOW_URL; every replica behind a headless Service),
        /// each probed; null when the consumer's URL is not set.
        #[schema(required = true)]
        replicas: Option<usize>,
        /// Of those, how many answered /readyz with 200.
        #[schema(required = true)]
        ready: Option<usize>,
    },
    #[schema(title = "StoreFigures")]
    Store {
        /// Time to answer the probe (the newest per-second totals); null
        /// when it did not.
        #[schema(required = true)]
        latency_ms: Option<f64>,
        #[schema(required = true)]
        stored_per_second: Option<f64>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct PartitionFigures {
    pub partition: i32,
    /// Oldest offset held.
    pub low: i64,
    /// End offset: the next record's.
    pub high: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct GroupFigures {
    pub partition: i32,
    /// null when the group never committed on this partition.
    #[schema(required = true)]
    pub committed: Option<i64>,
    #[schema(minimum = 0)]
    pub lag: i64,
}

/// A time a stage was degraded or down.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Period {
    pub stage: &'static str,
    #[schema(schema_with = not_ok)]
    pub status: Status,
    /// The latest reason given during the period.
    pub reason: String,
    /// Unix ms. A consumer that turned from ok to lagging: when its oldest
    /// waiting record arrived (lag_seconds before it crossed the threshold).
    pub from: i64,
    /// Unix ms; null while it lasts.
    #[schema(required = true)]
    pub to: Option<i64>,
}

/// The thresholds in force, so that a reader knows what "degraded" meant.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub struct Thresholds {
    /// PIPELINE_LAG_EVENTS
    pub lag_events: u64,
    /// PIPELINE_LAG_SECONDS
    pub lag_seconds: f64,
    /// PIPELINE_STALL_AFTER
    pub stall_seconds: f64,
    /// PIPELINE_SLOW_STORE
    pub slow_store_ms: f64,
}

/// `/api/v1/pipeline`'s answer: the newest probe of every stage.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(as = Pipeline)]
pub struct Snapshot {
    /// When the probe ran (Unix ms).
    pub time: i64,
    /// The worst stage's status.
    pub status: Status,
    /// "stage: reason" for every stage that is not ok, in pipeline order.
    pub problems: Vec<String>,
    /// Every stage, in pipeline order.
    #[schema(schema_with = every_stage)]
    pub stages: Vec<Stage>,
    /// When a stage was degraded or down within PIPELINE_HISTORY (1 h),
    /// oldest first; open ones last.
    pub periods: Vec<Period>,
    pub thresholds: Thresholds,
}

fn stage_name() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(STAGES))
}

fn every_stage() -> ArrayBuilder {
    ArrayBuilder::new()
        .items(Ref::from_schema_name(Stage::name()))
        .min_items(Some(STAGES.len()))
        .max_items(Some(STAGES.len()))
        .description(Some("Every stage, in pipeline order"))
}

/// A period's status: any but ok.
fn not_ok() -> ObjectBuilder {
    let not_ok = [Status::Degraded, Status::Down].map(serde_json::to_value);
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(not_ok.into_iter().flatten()))
}
