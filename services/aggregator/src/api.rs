//! The query endpoints: `/api` (the Go version's shape), `/api/v1/series`
//! and `/api/v1/totals`. Each asks both stores at once; a store that fails
//! is named in the answer, never shown as zeros.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::json;

use streamproc_event::EventTime;
use streamproc_kit::error::ErrorResponse;

use crate::metrics::Rejection;
use crate::pipeline;
use crate::series::{zero_filled, Point};
use crate::stores::{Both, Store, StoreError, Stores, Totals};
use crate::AppState;
use streamproc_grid::{Grid, GridError, GridParams};

/// The Go version's window: the last ten minutes in ten-second buckets.
const LEGACY_STEP_MS: i64 = 10_000;
const LEGACY_BUCKETS: i64 = 60;

/// What a disabled aggregator answers, as event-api does.
pub const DISABLED_MESSAGE: &str = "processing disabled, did nothing";

/// Seconds a client should wait before asking again after a 503.
const RETRY_AFTER_SECONDS: u32 = 5;
/// The same when the aggregator is busy rather than a store down: a slot
/// frees as soon as one answer is sent.
const BUSY_RETRY_AFTER_SECONDS: u32 = 1;

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

/// Every way a query can fail. The body is the services' shared error
/// shape (`streamproc_kit::error`); a bad parameter is named in `parameter`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    BadParameter(GridError),
    #[error("{DISABLED_MESSAGE}")]
    Disabled,
    /// A limit on concurrent work is reached; says which.
    #[error("{0}")]
    Busy(&'static str),
    /// No answer within REQUEST_TIMEOUT.
    #[error("no answer within {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    /// A part of the service is switched off by a setting; says which.
    #[error("{0}")]
    Off(&'static str),
    /// The clock is past the last time a query may name (2100).
    #[error(transparent)]
    Clock(GridError),
    /// `/api` answers whole or not at all: at least one store failed.
    #[error("{0}")]
    StoresFailed(String),
}

impl ApiError {
    /// A stable, machine-readable name for the error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadParameter(_) => "bad_parameter",
            Self::Disabled => "disabled",
            Self::Busy(_) => "busy",
            Self::Timeout(_) => "timeout",
            Self::Off(_) => "off",
            Self::Clock(_) => "clock_out_of_range",
            Self::StoresFailed(_) => "stores_unavailable",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, retry_after) = match &self {
            Self::BadParameter(_) => (StatusCode::BAD_REQUEST, None),
            Self::Busy(_) | Self::Timeout(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                Some(BUSY_RETRY_AFTER_SECONDS),
            ),
            Self::Disabled | Self::Off(_) | Self::Clock(_) | Self::StoresFailed(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, Some(RETRY_AFTER_SECONDS))
            }
        };
        let mut response = ErrorResponse::new(status, self.code(), self.to_string());
        if let Self::BadParameter(error) = &self {
            response = response.with("parameter", error.param());
        }
        if let Some(secs) = retry_after {
            response = response.retry_after(secs);
        }
        response.into_response()
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

/// One store's part of an answer: its data, or why there is none.
#[derive(Debug, Serialize)]
pub struct Part<T> {
    pub store: Store,
    pub available: bool,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub data: Option<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl<T> Part<T> {
    fn new<U>(store: Store, result: Result<U, StoreError>, data: impl FnOnce(U) -> T) -> Self {
        match result {
            Ok(value) => Self {
                store,
                available: true,
                data: Some(data(value)),
                error: None,
            },
            Err(error) => Self {
                store,
                available: false,
                data: None,
                error: Some(format!("{}: {error}", store.name())),
            },
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Points {
    pub points: Vec<Point>,
}

/// Both series on one grid; also the payload of each stream event.
#[derive(Debug, Serialize)]
pub struct SeriesBody {
    pub from: i64,
    pub to: i64,
    pub step: i64,
    pub high: Part<Points>,
    pub low: Part<Points>,
}

impl SeriesBody {
    pub async fn query(stores: &Stores, grid: &Grid) -> Self {
        let Both { high, low } = stores.buckets(grid).await;
        let points = |buckets: Vec<_>| Points {
            points: zero_filled(grid, &buckets),
        };
        Self {
            from: grid.start_ms(),
            to: grid.end_ms(),
            step: grid.step_ms(),
            high: Part::new(Store::TimescaleDb, high, points),
            low: Part::new(Store::InfluxDb, low, points),
        }
    }

    fn complete(&self) -> bool {
        self.high.available && self.low.available
    }
}

/// `GET /api/v1/series?from=&to=&step=|max_points=`
pub async fn series(
    State(state): State<AppState>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let grid = GridParams::from_query(&pairs)
        .and_then(|params| params.grid(EventTime::now().as_millis()))
        .map_err(ApiError::BadParameter)?;
    let stores = state.source.stores()?;
    let body = SeriesBody::query(stores, &grid).await;
    Ok(answer(body.complete(), body))
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

#[derive(Debug, Serialize)]
pub struct TotalsBody {
    pub high: Part<Totals>,
    pub low: Part<Totals>,
}

/// `GET /api/v1/totals`
pub async fn totals(State(state): State<AppState>) -> Result<Response, ApiError> {
    let stores = state.source.stores()?;
    let Both { high, low } = stores.totals().await;
    let body = TotalsBody {
        high: Part::new(Store::TimescaleDb, high, |t| t),
        low: Part::new(Store::InfluxDb, low, |t| t),
    };
    Ok(answer(body.high.available && body.low.available, body))
}

#[derive(Serialize)]
struct LegacyPoint {
    time: i64,
    count: u64,
    #[serde(rename = "type")]
    kind: &'static str,
}

/// `GET /api`: the Go version's answer, on the aligned, zero-filled grid.
pub async fn legacy(State(state): State<AppState>) -> Response {
    let Source::Stores(stores) = state.source.as_ref() else {
        return Json(json!({"message": DISABLED_MESSAGE, "points": []})).into_response();
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
                            kind: "low",
                        },
                        LegacyPoint {
                            time: high.time,
                            count: high.count,
                            kind: "high",
                        },
                    ]
                })
                .collect();
            Json(json!({"message": "ok", "points": points})).into_response()
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
