//! The one consume loop both consumers run: read a batch from the topic,
//! route it, write this consumer's events to its [`Sink`], and commit the
//! offsets only after the write is durable (rust-rdkafka's at-least-once
//! pattern). Redelivery after a crash is harmless because every sink write is
//! idempotent, keyed by the event id: together that is exactly-once in effect.
//!
//! The next batch is read while one is stored, and the commits go out in
//! the background (`commit`), so that fetching, writing and committing
//! overlap rather than take turns.

mod batch;
mod commit;
mod context;
mod dead_letter;
mod metrics;
pub mod rebuild;
pub mod service;
mod stall;
mod store;
mod stranded;
pub mod visible;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::ClientConfig;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::{ConsumerArgs, KafkaArgs, ProducerArgs};
pub use batch::Batch;
use commit::{Commits, Owed};
use dead_letter::DeadLetters;
pub use metrics::ConsumerMetrics;
use stall::Stall;
use store::Store;
use streamproc_event::{names, Route, Watermark};
use streamproc_event::{EventBounds, LoggedEvent};
use streamproc_kit::backoff::Backoff;
use streamproc_kit::error::BoxError;
use streamproc_kit::ops::NotReady;
use visible::Visible;

impl ConsumerSettings {
    /// The settings of `service`, which stores the events of `route`.
    pub fn from_args(args: &ConsumerArgs, kafka: &KafkaArgs, route: Route, service: &str) -> Self {
        Self {
            brokers: kafka.bootstrap_servers(),
            topic: kafka.kafka_topic.clone(),
            producer: kafka.producer,
            group_id: args
                .kafka_group_id
                .clone()
                .unwrap_or_else(|| names::consumer_group(service)),
            dead_letter_topic: args.kafka_dlq_topic.clone(),
            route,
            watermark: Watermark::new(args.watermark)
                .expect("validated when the flags were parsed"),
            bounds: args.bounds.bounds(),
            batch_max_events: args.batch_max_events.max(1),
            batch_max_age: args.batch_max_age,
            fetch_wait_max: args.fetch_wait_max,
            retry_initial: Duration::from_millis(200),
            retry_max: args.retry_max,
            drain_timeout: args.drain_timeout,
            stall_after: args.stall_after,
        }
    }
}

/// Why a sink write failed. Either way nothing is committed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The store is down or slow: retry the same batch after a backoff.
    #[error("the store is unavailable")]
    Unavailable(#[source] BoxError),
    /// The store refused the data itself (retrying cannot help): the batch
    /// is split until the refused events are found, and only those go to
    /// the dead-letter topic, so their partition keeps flowing.
    #[error("the store refused the data")]
    Rejected(#[source] BoxError),
}

/// Where a consumer stores its events. `write` must be idempotent: writing
/// an event whose id is already stored changes nothing. Each event comes
/// with the record it was read from, which the store keeps beside it so
/// that a stored event can be traced back to the log.
pub trait Sink: Send + Sync + 'static {
    /// Whether a written event can be read from the store as soon as
    /// `write` returns. When it can, the loop tells [`Visible`]'s
    /// listeners after each stored batch; a sink whose readers see its
    /// events only later (consumer-low's, once their per-second totals are
    /// refreshed) says false and tells them itself.
    const VISIBLE_WHEN_WRITTEN: bool = true;

    fn write(&self, events: &[LoggedEvent]) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Records every valid event of a batch (`ours`, this route's, and
    /// `others`, the other route's) in the ledger of accepted events, for
    /// a sink that keeps it: consumer-high's does, since it reads every
    /// record anyway, and the aggregator's reconciliation compares both
    /// stores against it. Called before `write` and before the commit, so
    /// the ledger is complete up to the group's committed offsets. Must be
    /// idempotent, as `write`. Most sinks keep no ledger.
    fn record_accepted(
        &self,
        _ours: &[LoggedEvent],
        _others: &[LoggedEvent],
    ) -> impl Future<Output = Result<(), SinkError>> + Send {
        std::future::ready(Ok(()))
    }

    /// Whether the store answers, for `/readyz`.
    fn check(&self) -> impl Future<Output = Result<(), SinkError>> + Send;
}

/// How one consumer reads and batches.
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    pub brokers: String,
    pub topic: String,
    pub group_id: String,
    pub dead_letter_topic: String,
    /// How the dead-letter producer writes (`KAFKA_IDEMPOTENCE`).
    pub producer: ProducerArgs,
    /// The events this consumer stores; the others are skipped (and their
    /// offsets committed), since the other consumer stores them.
    pub route: Route,
    pub watermark: Watermark,
    /// Records outside these are dead-lettered, as event-api refuses them.
    pub bounds: EventBounds,
    pub batch_max_events: usize,
    /// A batch is written as soon as no further record is waiting, and at
    /// the latest this long after its first record.
    pub batch_max_age: Duration,
    /// How long the broker may hold an empty fetch.
    pub fetch_wait_max: Duration,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// On shutdown, how long to keep retrying the last batch's write.
    pub drain_timeout: Duration,
    /// How long the loop may fail to store the batch in hand before
    /// `/readyz` reports it stalled.
    pub stall_after: Duration,
}

/// A subscribed consumer, ready to [`Consumer::run`].
pub struct Consumer {
    settings: ConsumerSettings,
    kafka: Arc<StreamConsumer<context::StatsContext>>,
    /// Offsets stored and not yet committed.
    owed: Arc<Owed>,
    dead_letters: DeadLetters,
    metrics: ConsumerMetrics,
    stall: Stall,
    visible: Visible,
}

impl Consumer {
    pub fn new(
        settings: ConsumerSettings,
        metrics: ConsumerMetrics,
        visible: Visible,
    ) -> anyhow::Result<Self> {
        let owed = Arc::new(Owed::new(settings.topic.clone(), metrics.commits.clone()));
        let kafka: StreamConsumer<context::StatsContext> = ClientConfig::new()
            .set("bootstrap.servers", &settings.brokers)
            .set("broker.address.family", "v4")
            .set("group.id", &settings.group_id)
            // Offsets are committed by hand, after the sink write.
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            // A member that died without leaving (kill -9, a lost node) holds
            // its partitions until this runs out: 10 s rather than 45 s.
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "3000")
            // Bounds what librdkafka prefetches while the sink is down.
            .set("queued.max.messages.kbytes", "16384")
            .set("statistics.interval.ms", "5000")
            .set(
                "fetch.wait.max.ms",
                settings
                    .fetch_wait_max
                    .as_millis()
                    .clamp(1, 300_000)
                    .to_string(),
            )
            .create_with_context(context::StatsContext::new(
                metrics.lag.clone(),
                settings.topic.clone(),
                owed.clone(),
            ))?;
        kafka.subscribe(&[&settings.topic])?;
        let dead_letters = DeadLetters::new(
            &settings.brokers,
            &settings.dead_letter_topic,
            settings.producer,
        )?;
        Ok(Self {
            stall: Stall::new(settings.stall_after),
            settings,
            kafka: Arc::new(kafka),
            owed,
            dead_letters,
            metrics,
            visible,
        })
    }

    /// Whether the brokers answer and the topic exists, for `/readyz`.
    pub async fn check_broker(&self) -> Result<(), NotReady> {
        self.dead_letters
            .check_reachable(&self.settings.topic)
            .await
            .map_err(|e| NotReady::new("kafka", e))
    }

    /// Whether the loop stores what it reads, for `/readyz`.
    pub fn check_progress(&self) -> Result<(), NotReady> {
        self.stall.check().map_err(|e| NotReady::new("consumer", e))
    }

    /// Runs the loop until `shutdown` is cancelled; then writes and commits
    /// the batch in hand and returns.
    pub async fn run<S: Sink>(&self, sink: &S, shutdown: CancellationToken) {
        let settings = &self.settings;
        tracing::info!(
            topic = %settings.topic,
            group = %settings.group_id,
            route = %settings.route,
            watermark = settings.watermark.value(),
            "consuming"
        );
        let stop_watching = CancellationToken::new();
        tokio::spawn(stranded::rejoin_when_stranded(
            self.kafka.clone(),
            settings.topic.clone(),
            self.metrics.rejoins.clone(),
            stop_watching.clone(),
        ));
        let _stop_watching = stop_watching.drop_guard();
        let mut retry = Backoff::new(settings.retry_initial, settings.retry_max);
        let mut progress = Progress::default();
        let commits = Commits::start(self.kafka.clone(), self.owed.clone());
        let read = || batch::gather(&self.kafka, settings, &self.metrics, &shutdown);
        let mut batch = read().await;
        loop {
            if batch.is_empty() {
                if shutdown.is_cancelled() {
                    break;
                }
                batch = read().await;
                continue;
            }
            // Every line logged while this batch is stored carries which
            // records it holds.
            let span = tracing::info_span!(
                "batch",
                route = %settings.route,
                records = batch.records(),
                events = batch.events.len(),
                dead_lettered = batch.dead.len(),
                next_offsets = ?batch.next_offsets(),
            );
            let deadline = Deadline::new(&shutdown, settings.drain_timeout);
            let mut store = Store {
                dead_letters: &self.dead_letters,
                metrics: &self.metrics,
                retry: &mut retry,
                deadline: &deadline,
                stall: &self.stall,
            };
            // What follows a stored batch happens here, not after the
            // join below: idle, the next batch may not come for a long
            // time, and its offsets and readiness must not wait for it.
            let turn = std::time::Instant::now();
            let storing = async {
                let stored = store.batch(&batch, sink).await;
                let stored_after = turn.elapsed();
                if stored {
                    if S::VISIBLE_WHEN_WRITTEN && !batch.events.is_empty() {
                        self.visible.changed();
                    }
                    commits.owe(batch.next_offsets());
                    self.stall.progressed(&self.metrics);
                }
                (stored, stored_after)
            };
            // The next batch is read (decoded, validated, routed) while
            // this one is stored, so the broker's fetches and the store's
            // writes overlap instead of taking turns. Once shutdown begins
            // the next batch holds what was read by then, stored before
            // the loop ends.
            let next = async {
                let next = if shutdown.is_cancelled() {
                    Batch::empty(settings)
                } else {
                    read().await
                };
                (next, turn.elapsed())
            };
            let ((stored, stored_after), (next, read_after)) =
                tokio::join!(storing.instrument(span.clone()), next);
            if stored {
                // Whichever came later was waited on.
                let waits = Waits {
                    on_store: stored_after.saturating_sub(read_after),
                    for_records: read_after.saturating_sub(stored_after),
                };
                self.metrics.waited(waits.on_store, waits.for_records);
                progress.add(&batch, waits);
            } else {
                let _in_batch = span.enter();
                tracing::warn!("stopping with a batch not stored: it will be read again");
                break;
            }
            batch = next;
        }
        commits.finish().await;
        tracing::info!("consumer stopped");
    }
}

/// What one turn of the loop (store a batch, read the next) waited on
/// after the other side was done.
#[derive(Clone, Copy)]
struct Waits {
    on_store: Duration,
    for_records: Duration,
}

/// A periodic log line of what was stored, rather than one per batch, and
/// which side the loop waited on: the store (the next batch was read before
/// this one was stored) or the records (the other way round: the broker,
/// or an idle topic). Under a backlog that names the bound.
struct Progress {
    since: std::time::Instant,
    records: usize,
    events: usize,
    dead: usize,
    waited_on_store: Duration,
    waited_for_records: Duration,
}

impl Default for Progress {
    fn default() -> Self {
        Self {
            since: std::time::Instant::now(),
            records: 0,
            events: 0,
            dead: 0,
            waited_on_store: Duration::ZERO,
            waited_for_records: Duration::ZERO,
        }
    }
}

impl Progress {
    const EVERY: Duration = Duration::from_secs(10);

    /// Adds a stored batch and what its turn of the loop waited on.
    fn add(&mut self, batch: &Batch, waits: Waits) {
        self.records += batch.records();
        self.events += batch.events.len();
        self.dead += batch.dead.len();
        self.waited_on_store += waits.on_store;
        self.waited_for_records += waits.for_records;
        if self.since.elapsed() >= Self::EVERY {
            tracing::info!(
                over = ?self.since.elapsed(),
                records = self.records,
                written = self.events,
                dead_lettered = self.dead,
                waited_on_store = ?self.waited_on_store,
                waited_for_records = ?self.waited_for_records,
                "progress"
            );
            *self = Self::default();
        }
    }
}

/// Sleeps for retries until shutdown, then for at most the drain time.
struct Deadline<'a> {
    shutdown: &'a CancellationToken,
    drain: Duration,
    drain_ends: std::sync::OnceLock<tokio::time::Instant>,
}

impl<'a> Deadline<'a> {
    fn new(shutdown: &'a CancellationToken, drain: Duration) -> Self {
        Self {
            shutdown,
            drain,
            drain_ends: std::sync::OnceLock::new(),
        }
    }

    /// Returns false when the drain time is over instead of sleeping.
    async fn sleep(&self, delay: Duration) -> bool {
        if !self.shutdown.is_cancelled() {
            tokio::select! {
                () = self.shutdown.cancelled() => {}
                () = tokio::time::sleep(delay) => return true,
            }
        }
        let ends = *self
            .drain_ends
            .get_or_init(|| tokio::time::Instant::now() + self.drain);
        let now = tokio::time::Instant::now();
        if now >= ends {
            return false;
        }
        tokio::time::sleep(delay.min(ends - now)).await;
        true
    }
}
