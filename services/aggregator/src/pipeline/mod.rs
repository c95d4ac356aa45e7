//! The health of every stage of the pipeline — event-api, Kafka, each
//! consumer group, each store — probed every PIPELINE_INTERVAL by one task
//! of the aggregator, and served as the latest snapshot by
//! `GET /api/v1/pipeline` and by `pipeline` events on the live stream.
//!
//! Lag and rates come from Kafka (the groups' committed offsets against the
//! topic's end offsets), not from the consumers, so they are the same
//! whether a consumer runs once on a laptop or as several replicas behind
//! one Service, and a consumer that is gone is seen as lagging rather than
//! not seen at all.

mod config;
mod event_api;
mod failure;
mod health;
mod history;
mod kafka;
mod metrics;
mod periods;
mod replicas;
mod snapshot;
mod stores;

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use streamproc_event::EventTime;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

pub use config::PipelineArgs;
pub use kafka::{KafkaProbe, KafkaSample};
pub use replicas::Replicas;
pub use snapshot::{Snapshot, Stage, Status, STAGES};

use crate::stores::{InfluxReader, TimescaleReader};
use event_api::ApiProbe;
use health::{judge, point, Names, Probe, Rules};
use history::History;
use metrics::PipelineMetrics;
use periods::Periods;
use stores::StoreProbe;

/// What `/api/v1/pipeline` answers with PIPELINE_WATCH=false.
pub const WATCH_OFF: &str = "the pipeline is not watched here (PIPELINE_WATCH=false)";

/// The newest snapshot; `None` until the first probe has finished.
pub type Latest = watch::Receiver<Option<Arc<Snapshot>>>;

/// Where the probes go, and their limits.
pub struct Setup<'a> {
    pub args: &'a PipelineArgs,
    pub timescale: TimescaleReader,
    pub influx: InfluxReader,
    /// Longest wait for any one answer (QUERY_TIMEOUT).
    pub timeout: Duration,
    /// Where the stages' status and lag are registered for `/metrics`.
    pub registry: &'a mut Registry,
}

struct Monitor {
    api: ApiProbe,
    /// consumer-high's replicas, then consumer-low's, where watched.
    members: [Option<Replicas>; 2],
    kafka: KafkaProbe,
    stores: StoreProbe,
    names: Names,
    rules: Rules,
    history: History,
    periods: Periods,
    /// Each stage's status in the previous probe, to log changes.
    previous: Vec<Status>,
    metrics: PipelineMetrics,
}

/// Starts probing every PIPELINE_INTERVAL until `shutdown`. The clients
/// connect on first use, so this succeeds while everything is down.
pub fn start(setup: Setup<'_>, shutdown: CancellationToken) -> anyhow::Result<Latest> {
    let args = setup.args;
    args.validate()?;
    let groups = [
        args.consumer_high_group.clone(),
        args.consumer_low_group.clone(),
    ];
    let keep_ms = i64::try_from(args.pipeline_history.as_millis()).unwrap_or(i64::MAX);
    // Enough points for the history at this interval, with a hard bound.
    let max_points = (args.pipeline_history.as_millis() / args.pipeline_interval.as_millis())
        .clamp(2, 100_000) as usize
        + 1;
    let monitor = Monitor {
        api: ApiProbe::new(args.api_base()?, setup.timeout)?,
        members: {
            let [high, low] = args.consumer_bases()?;
            let watch = |base: Option<reqwest::Url>| {
                base.map(|base| Replicas::new(base, setup.timeout))
                    .transpose()
            };
            [watch(high)?, watch(low)?]
        },
        kafka: KafkaProbe::for_consumers(args, setup.timeout)?,
        stores: StoreProbe::new(
            setup.timescale,
            setup.influx,
            setup.timeout,
            args.pipeline_rate_window,
        ),
        names: Names {
            topic: args.kafka.kafka_topic.clone(),
            dead_letter_topic: args.kafka_dlq_topic.clone(),
            groups,
        },
        rules: Rules {
            lag_events: args.pipeline_lag_events,
            lag_seconds: args.pipeline_lag_seconds,
            stall_after: args.pipeline_stall_after,
            slow_store: args.pipeline_slow_store,
            rate_window: args.pipeline_rate_window,
        },
        history: History::new(keep_ms, max_points),
        periods: Periods::new(keep_ms),
        previous: Vec::new(),
        metrics: PipelineMetrics::register(setup.registry),
    };
    tracing::info!(
        interval = %humantime::format_duration(args.pipeline_interval),
        brokers = %args.kafka.bootstrap_servers(),
        topic = %monitor.names.topic,
        groups = ?monitor.names.groups,
        event_api = %args.api_base()?,
        "watching the pipeline"
    );
    let (sender, receiver) = watch::channel(None);
    tokio::spawn(run(monitor, sender, args.pipeline_interval, shutdown));
    Ok(receiver)
}

async fn run(
    mut monitor: Monitor,
    sender: watch::Sender<Option<Arc<Snapshot>>>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut ticks = tokio::time::interval(interval);
    // A probe slower than the interval (a broker timing out) delays the
    // next one rather than causing a burst.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let snapshot = tokio::select! {
            () = shutdown.cancelled() => return,
            snapshot = monitor.probe() => snapshot,
        };
        sender.send_replace(Some(Arc::new(snapshot)));
    }
}

impl Monitor {
    async fn probe(&mut self) -> Snapshot {
        let time_ms = EventTime::now().as_millis();
        let members = |index: usize| {
            let replicas = self.members[index].as_ref();
            async move {
                match replicas {
                    Some(replicas) => Some(replicas.readiness().await),
                    None => None,
                }
            }
        };
        let (api, kafka, (timescale, influx), high, low) = tokio::join!(
            self.api.sample(),
            self.kafka.sample(),
            self.stores.sample(time_ms),
            members(0),
            members(1),
        );
        let probe = Probe {
            time_ms,
            api,
            kafka,
            members: [high, low],
            timescale,
            influx,
        };
        self.history.push(point(&probe));
        let stages = judge(&probe, &self.history, &self.names, &self.rules);
        self.periods.update(time_ms, &stages);
        self.log_changes(&stages);
        self.metrics.record(&stages);
        let problems = stages
            .iter()
            .filter_map(|s| Some(format!("{}: {}", s.name, s.reason.as_ref()?)))
            .collect();
        Snapshot {
            time: time_ms,
            status: stages.iter().map(|s| s.status).max().unwrap_or(Status::Ok),
            problems,
            periods: self.periods.list(&STAGES),
            stages,
            thresholds: self.rules.thresholds(),
        }
    }

    fn log_changes(&mut self, stages: &[snapshot::Stage]) {
        for (index, stage) in stages.iter().enumerate() {
            let before = self.previous.get(index).copied().unwrap_or(Status::Ok);
            if stage.status == before {
                continue;
            }
            match &stage.reason {
                Some(reason) => tracing::warn!(
                    stage = stage.name,
                    status = ?stage.status,
                    reason = %reason,
                    "pipeline stage is not ok"
                ),
                None => tracing::info!(stage = stage.name, "pipeline stage is ok again"),
            }
        }
        self.previous = stages.iter().map(|s| s.status).collect();
    }
}
