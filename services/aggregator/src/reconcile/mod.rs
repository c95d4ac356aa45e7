//! Proof for the whole pipeline at once: `GET /api/v1/reconcile` counts,
//! per bucket of event time and in total, the events accepted into the log
//! against what each store holds and what each refused.
//!
//! "Accepted" is the ledger consumer-high keeps (migration 0005): every
//! valid event it reads, both routes', once per id. Offsets would count
//! records, not events (a retried request or a producer retry writes one
//! event twice), and carry no event time; reading the log per request would
//! take seconds per million records. The ledger is written before
//! consumer-high commits, so it is complete up to its group's offsets.
//!
//! A difference is only called a loss when nothing can still be on its
//! way, which is checked around the counts rather than guessed from a
//! snapshot: Kafka is asked first (every group must have committed the end
//! of every partition), then the stores are counted, then Kafka is asked
//! again (no record may have arrived meanwhile), with InfluxDB's totals
//! refreshed and the dead letters read up to the end of their topic. Any
//! of these failing makes the answer "in flight", with the reason.

mod tally;

use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream::{self, StreamExt};
use serde::Serialize;
use streamproc_grid::Grid;
use utoipa::ToSchema;

pub use tally::{BucketTally, Tally, Verdict};

use crate::api;
use crate::dead_letters::{DeadLetters, RefusedEvent};
use crate::error::ApiError;
use crate::pipeline::{KafkaProbe, KafkaSample, PipelineArgs, WATCH_OFF};
use crate::schema::{BadParameter, ErrorBody, GridQuery};
use crate::stores::{ReconcileCounts, StoreError, Stores};
use crate::AppState;
use tally::Counts;

/// Most refused events looked up in their store per answer, to tell those
/// sent back and stored since; past it the rest count as dead-lettered.
const REFUSED_LOOKED_UP: usize = 100;

/// `/api/v1/reconcile`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Reconciliation {
    /// The range's start, Unix ms.
    pub from: i64,
    /// The range's end (exclusive), Unix ms.
    pub to: i64,
    /// Bucket width, ms.
    pub step: i64,
    pub status: Verdict,
    /// The answer in one line: "all N events accounted for", what is still
    /// in flight and why, or what is missing from which store and where.
    pub summary: String,
    /// Events accepted in the range, both routes.
    pub accepted: u64,
    /// The range in total, TimescaleDB's side.
    pub timescaledb: Tally,
    /// The range in total, InfluxDB's side.
    pub influxdb: Tally,
    /// Records after each consumer group's committed offsets, when the
    /// answer began; null when Kafka did not say.
    #[schema(required = true)]
    pub lag_high: Option<i64>,
    #[schema(required = true)]
    pub lag_low: Option<i64>,
    /// Whether every dead letter in the topic is kept (DEAD_LETTERS_KEPT):
    /// when false, refused events of older letters count as not
    /// accounted for.
    pub dead_letters_complete: bool,
    /// Every bucket that holds anything, oldest first.
    pub buckets: Vec<BucketTally>,
}

/// What a reconciliation reads besides the stores: Kafka's offsets, and
/// the dead letters the aggregator keeps.
pub struct Reconciler {
    kafka: KafkaProbe,
    dead_letters: DeadLetters,
}

impl Reconciler {
    pub fn new(
        args: &PipelineArgs,
        dead_letters: DeadLetters,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            kafka: KafkaProbe::for_consumers(args, timeout)?,
            dead_letters,
        })
    }

    async fn reconcile(&self, stores: &Stores, grid: &Grid) -> Result<Reconciliation, ApiError> {
        let before = self.kafka.sample().await;
        let ReconcileCounts { ledger, high, low } = stores.reconcile_counts(grid).await;
        let refused = self.dead_letters.refused(grid.start_ms(), grid.end_ms());
        let refused = not_stored(stores, refused).await;
        let after = self.kafka.sample().await;
        let (accepted, timescaledb, low) = match (ledger, high, low) {
            (Ok(ledger), Ok(high), Ok(low)) => (ledger, high, low),
            (ledger, high, low) => {
                let failed = [
                    ("ledger", ledger.err()),
                    ("timescaledb", high.err()),
                    ("influxdb", low.err()),
                ];
                return Err(stores_failed(failed));
            }
        };
        let unsettled = low.unsettled.len();
        let counts = Counts {
            accepted,
            timescaledb,
            influxdb: low.counts,
            refused,
        };
        let (buckets, [high_total, low_total]) = tally::tally(grid, &counts);
        let lags = [0, 1].map(|group| group_lag(&before, group));
        let in_flight = still_moving(&before, &after, lags, unsettled, &self.dead_letters);
        let (status, summary) =
            tally::verdict(&buckets, &[high_total, low_total], in_flight.as_deref());
        Ok(Reconciliation {
            from: grid.start_ms(),
            to: grid.end_ms(),
            step: grid.step_ms(),
            status,
            summary,
            accepted: high_total.accepted + low_total.accepted,
            timescaledb: high_total,
            influxdb: low_total,
            lag_high: lags[0],
            lag_low: lags[1],
            dead_letters_complete: self.dead_letters.keeps_all(),
            buckets,
        })
    }
}

/// The refused events that were not stored since (a dead letter sent back
/// with `scripts/requeue.py` once its cause was fixed is stored under the
/// same id), each looked for in the store that refused it.
async fn not_stored(stores: &Stores, refused: Vec<RefusedEvent>) -> Vec<RefusedEvent> {
    let (checked, rest) = refused.split_at(refused.len().min(REFUSED_LOOKED_UP));
    let mut still: Vec<RefusedEvent> = stream::iter(checked.iter().cloned())
        .map(|event| async move {
            let found = stores.find_in(event.store, &event.id, event.time).await;
            // Not known to be stored (a failed lookup included) is counted
            // as refused: the answer then errs towards "not accounted for".
            (!matches!(found, Ok(Some(_)))).then_some(event)
        })
        .buffer_unordered(8)
        .filter_map(std::future::ready)
        .collect()
        .await;
    still.extend_from_slice(rest);
    still
}

/// Group `index`'s records after its committed offsets, all partitions.
fn group_lag(sample: &KafkaSample, index: usize) -> Option<i64> {
    let positions = sample.groups.get(index)?.as_ref().ok()?;
    Some(positions.iter().map(|p| p.lag).sum())
}

/// Why the counts may still change, or `None` when nothing is on its way.
fn still_moving(
    before: &KafkaSample,
    after: &KafkaSample,
    [lag_high, lag_low]: [Option<i64>; 2],
    unsettled_buckets: usize,
    dead_letters: &DeadLetters,
) -> Option<String> {
    let (Ok(ends_before), Ok(ends_after)) = (&before.ends, &after.ends) else {
        return Some("Kafka does not answer, so consumer lag is unknown".to_owned());
    };
    for (group, lag) in [("consumer-high", lag_high), ("consumer-low", lag_low)] {
        match lag {
            None => return Some(format!("{group}'s committed offsets are unknown")),
            Some(lag) if lag > 0 => return Some(format!("{group} is {lag} records behind")),
            Some(_) => {}
        }
    }
    let highs = |ends: &[streamproc_kafka::offsets::PartitionEnds]| -> Vec<(i32, i64)> {
        ends.iter().map(|e| (e.partition, e.high)).collect()
    };
    if highs(ends_before) != highs(ends_after) {
        return Some("records arrived while counting".to_owned());
    }
    if unsettled_buckets > 0 {
        return Some(format!(
            "InfluxDB's totals of {unsettled_buckets} buckets are being refreshed"
        ));
    }
    match after.dead_lettered {
        Some(records) if dead_letters.has_read(records) => None,
        Some(_) => Some("the newest dead letters are not read yet".to_owned()),
        None => Some("the dead-letter topic does not answer".to_owned()),
    }
}

fn stores_failed<const N: usize>(failed: [(&str, Option<StoreError>); N]) -> ApiError {
    let reasons: Vec<String> = failed
        .into_iter()
        .filter_map(|(part, error)| {
            let error = error?;
            Some(format!("{part}: {}", streamproc_kit::error::Chain(&error)))
        })
        .collect();
    ApiError::StoresFailed(reasons.join("; "))
}

/// `GET /api/v1/reconcile?from=&to=&step=|max_points=`
#[utoipa::path(
    get,
    path = "/api/v1/reconcile",
    summary = "Every accepted event accounted for: per bucket and in total, accepted against \
        stored and dead-lettered in each store, with in flight kept apart from missing",
    description = "Accepted events come from the ledger consumer-high keeps: every valid event \
        read from the topic, once per id, by event time. TimescaleDB's side counts the rows of \
        its events table one by one (so a row deleted by hand shows), InfluxDB's side its \
        per-second totals, and each side's dead letters are the events that store refused and \
        that were not stored since. status is in_flight while anything can still change the \
        counts (a consumer group behind the end of the topic, records arriving while counting, \
        InfluxDB totals being refreshed, dead letters not read yet); the summary says which. \
        Only then is a difference reported as unaccounted. The cost grows with the events in the \
        range: TimescaleDB's rows are counted, not read from its totals.",
    params(GridQuery),
    responses(
        (status = 200, description = "The reconciliation", body = Reconciliation),
        (status = 400, body = BadParameter,
            description = "A parameter is invalid, out of range or given twice; parameter names it"),
        (status = 401, response = streamproc_kit::auth::Unauthorized),
        (status = 503, body = ErrorBody,
            description = "A store or the ledger did not answer (message names it), DISABLE is \
                set, PIPELINE_WATCH is false, or the aggregator is busy (MAX_QUERIES) or took \
                longer than REQUEST_TIMEOUT"),
    ),
    security(("bearer" = []), ()),
)]
pub async fn reconcile(
    State(state): State<AppState>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let grid = api::grid_of(&pairs)?;
    let stores = state.source.stores()?;
    let reconciler = state.reconciler.as_ref().ok_or(ApiError::Off(WATCH_OFF))?;
    let answer = reconciler.reconcile(stores, &grid).await?;
    Ok(Json(answer).into_response())
}
