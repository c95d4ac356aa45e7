//! The query endpoints: `/api` (the Go version's shape), `/api/v1/series`
//! and `/api/v1/totals`. Each asks both stores at once; a store that fails
//! is named in the answer, never shown as zeros.

use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use streamproc_event::EventTime;
use streamproc_kit::auth::Unauthorized;

use crate::answers::{Kind, Legacy, LegacyPoint, Part, SeriesBody, TotalsBody};
use crate::error::{ApiError, DISABLED_MESSAGE, RETRY_AFTER_SECONDS};
use crate::metrics::Rejection;
use crate::pipeline;
use crate::schema::{BadParameter, ErrorBody, GridQuery, SeriesOrError, TotalsOrError};
use crate::stores::{Both, Store, Stores};
use crate::AppState;
use streamproc_grid::{Grid, GridParams};

/// The Go version's window: the last ten minutes in ten-second buckets.
const LEGACY_STEP_MS: i64 = 10_000;

const LEGACY_BUCKETS: i64 = 60;

/// Where the answers come from.
pub enum Source {
    Stores(Arc<Stores>),
    /// DISABLE is set: answer without querying anything.
    Disabled,
}

impl Source {
    /// The stores, or the disabled answer.
    pub fn stores(&self) -> Result<&Arc<Stores>, ApiError> {
        match self {
            Self::Stores(stores) => Ok(stores),
            Self::Disabled => Err(ApiError::Disabled),
        }
    }
}

/// Wraps the query endpoints: at most MAX_QUERIES at once (one more is
/// refused at once, since queueing would only hold its memory and its
/// client longer), each answered within REQUEST_TIMEOUT.
pub async fn bounded(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Ok(_permit) = state.queries.clone().try_acquire_owned() else {
        state.metrics.rejected(Rejection::Queries);
        return ApiError::Busy("too many queries at once: try again later").into_response();
    };
    match tokio::time::timeout(state.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            state.metrics.rejected(Rejection::Timeout);
            ApiError::Timeout(state.request_timeout).into_response()
        }
    }
}

/// `GET /api/v1/series?from=&to=&step=|max_points=`
#[utoipa::path(
    get,
    path = "/api/v1/series",
    summary = "Both series with count, sum, min, max and mean per bucket",
    params(GridQuery),
    responses(
        (status = 200, description = "Both series", body = SeriesBody),
        (status = 400, body = BadParameter,
            description = "A parameter is invalid, out of range or given twice; parameter names it"),
        (status = 401, response = Unauthorized),
        (status = 503, body = inline(SeriesOrError),
            description = "A store failed (its part has available=false and error), DISABLE is \
                set; or the aggregator is busy (MAX_QUERIES answers in progress) or took longer \
                than REQUEST_TIMEOUT: message says which"),
    ),
    security(("bearer" = []), ()),
)]
pub async fn series(
    State(state): State<AppState>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let grid = grid_of(&pairs)?;
    let stores = state.source.stores()?;
    let body = SeriesBody::query(stores, &grid).await;
    Ok(answer(body.complete(), body))
}

/// The grid a query's `from`, `to`, `step` and `max_points` ask for, as of
/// now; 400 naming the parameter otherwise.
pub fn grid_of(pairs: &[(String, String)]) -> Result<Grid, ApiError> {
    GridParams::from_query(pairs)
        .and_then(|params| params.grid(EventTime::now().as_millis()))
        .map_err(ApiError::BadParameter)
}

/// A whole answer is 200; one with a store missing is 503 with the same
/// body (the part that did answer, and the other's error), so that a client
/// that ignores the body still retries.
fn answer(complete: bool, body: impl Serialize) -> Response {
    if complete {
        Json(body).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, RETRY_AFTER_SECONDS)],
            Json(body),
        )
            .into_response()
    }
}

/// `GET /api/v1/totals`
#[utoipa::path(
    get,
    path = "/api/v1/totals",
    summary = "Count and sum of everything each store holds, and its newest event time",
    responses(
        (status = 200, description = "Totals", body = TotalsBody),
        (status = 401, response = Unauthorized),
        (status = 503, body = inline(TotalsOrError),
            description = "A store failed, DISABLE is set; or the aggregator is busy (MAX_QUERIES \
                answers in progress) or took longer than REQUEST_TIMEOUT: message says which"),
    ),
    security(("bearer" = []), ()),
)]
pub async fn totals(State(state): State<AppState>) -> Result<Response, ApiError> {
    let stores = state.source.stores()?;
    let Both { high, low } = stores.totals().await;
    let body = TotalsBody {
        high: Part::new(Store::TimescaleDb, high, |t| t),
        low: Part::new(Store::InfluxDb, low, |t| t),
    };
    Ok(answer(body.high.available && body.low.available, body))
}

/// `GET /api`: the Go version's answer, on the aligned, zero-filled grid.
#[utoipa::path(
    get,
    path = "/api",
    summary = format!(
        "The Go version's answer: counts for the last {} minutes in {} s buckets, both types \
         for every bucket start, sorted by time",
        LEGACY_BUCKETS * LEGACY_STEP_MS / 60_000,
        LEGACY_STEP_MS / 1_000
    ),
    responses(
        (status = 200, description = "Points", body = Legacy),
        (status = 401, response = Unauthorized),
        (status = 503, body = ErrorBody,
            description = "A store failed (message names it), or the aggregator is busy \
                (MAX_QUERIES) or took longer than REQUEST_TIMEOUT"),
    ),
    security(("bearer" = []), ()),
)]
pub async fn legacy(State(state): State<AppState>) -> Response {
    let Source::Stores(stores) = state.source.as_ref() else {
        let disabled = Legacy {
            message: DISABLED_MESSAGE,
            points: Vec::new(),
        };
        return Json(disabled).into_response();
    };
    // Valid until the clock passes 2100; said rather than panicked then.
    let grid = match Grid::latest(EventTime::now().as_millis(), LEGACY_STEP_MS, LEGACY_BUCKETS) {
        Ok(grid) => grid,
        Err(error) => return ApiError::Clock(error).into_response(),
    };
    let body = SeriesBody::query(stores, &grid).await;
    match (body.low.data, body.high.data) {
        (Some(low), Some(high)) => {
            let points: Vec<LegacyPoint> = low
                .points
                .iter()
                .zip(&high.points)
                .flat_map(|(low, high)| {
                    [
                        LegacyPoint {
                            time: low.time,
                            count: low.count,
                            kind: Kind::Low,
                        },
                        LegacyPoint {
                            time: high.time,
                            count: high.count,
                            kind: Kind::High,
                        },
                    ]
                })
                .collect();
            Json(Legacy {
                message: "ok",
                points,
            })
            .into_response()
        }
        _ => {
            let errors: Vec<String> = [body.high.error, body.low.error]
                .into_iter()
                .flatten()
                .collect();
            ApiError::StoresFailed(errors.join("; ")).into_response()
        }
    }
}

/// `GET /api/v1/pipeline`: the newest snapshot. 200 whatever the stages'
/// status: the answer is about the pipeline, and the aggregator answered.
#[utoipa::path(
    get,
    path = "/api/v1/pipeline",
    operation_id = "pipeline",
    summary = "The health of every stage of the pipeline, from the newest probe (every \
        PIPELINE_INTERVAL, 1 s)",
    description = "Stages in pipeline order: event-api, kafka, consumer-high, consumer-low, \
        timescaledb, influxdb. Each has a status (ok, degraded or down), the reason in words when \
        it is not ok, and its figures. Lag is the consumer group's committed offsets against the \
        topic's end offsets, read from Kafka, so it covers every replica of a consumer. A consumer \
        group is degraded when it is PIPELINE_LAG_EVENTS (10 000) events or PIPELINE_LAG_SECONDS \
        (10 s) behind, and down when it has committed nothing for PIPELINE_STALL_AFTER (30 s) \
        while events wait. The answer is 200 whatever the stages' status.",
    responses(
        (status = 200, description = "The newest snapshot", body = pipeline::Snapshot),
        (status = 401, response = streamproc_kit::auth::Unauthorized),
        (status = 503, body = ErrorBody,
            description = "DISABLE is set, PIPELINE_WATCH is false, or the first probe has not \
                finished yet; message says which"),
    ),
    security(("bearer" = []), ()),
)]
pub async fn pipeline(State(state): State<AppState>) -> Response {
    let Some(latest) = &state.pipeline else {
        return match state.source.stores() {
            Err(disabled) => disabled.into_response(),
            Ok(_) => ApiError::Off(pipeline::WATCH_OFF).into_response(),
        };
    };
    let snapshot = latest.borrow().clone();
    match snapshot {
        Some(snapshot) => Json(snapshot.as_ref()).into_response(),
        None => ApiError::Busy("the first probe of the pipeline has not finished: try again")
            .into_response(),
    }
}
