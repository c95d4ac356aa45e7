//! The query endpoints: `/api` (the Go version's shape), `/api/v1/series`
//! and `/api/v1/totals`. Each asks both stores at once; a store that fails
//! is named in the answer, never shown as zeros.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::json;

use crate::metrics::Rejection;
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
const RETRY_AFTER_SECONDS: &str = "5";
/// The same when the aggregator is busy rather than a store down: a slot
/// frees as soon as one answer is sent.
const BUSY_RETRY_AFTER_SECONDS: &str = "1";

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

pub enum ApiError {
    BadParameter(GridError),
    Disabled,
    /// A limit on concurrent work is reached; says which.
    Busy(&'static str),
    /// No answer within REQUEST_TIMEOUT.
    Timeout(Duration),
    /// A part of the service is switched off by a setting; says which.
    Off(&'static str),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::BadParameter(error) => (
                StatusCode::BAD_REQUEST,
                Json(json!({"message": error.to_string(), "parameter": error.param()})),
            )
                .into_response(),
            Self::Disabled => unavailable(json!({"message": DISABLED_MESSAGE})),
            Self::Off(message) => unavailable(json!({ "message": message })),
            Self::Busy(message) => busy(json!({ "message": message })),
            Self::Timeout(limit) => busy(json!({
                "message": format!("no answer within {}", humantime::format_duration(limit))
            })),
        }
    }
}

fn unavailable(body: serde_json::Value) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, RETRY_AFTER_SECONDS)],
        Json(body),
    )
        .into_response()
}

fn busy(body: serde_json::Value) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, BUSY_RETRY_AFTER_SECONDS)],
        Json(body),
    )
        .into_response()
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

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_millis()).ok())
        .unwrap_or(0)
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
        .and_then(|params| params.grid(now_ms()))
        .map_err(ApiError::BadParameter)?;
    let stores = state.source.stores()?;
    let body = SeriesBody::query(stores, &grid).await;
    Ok(answer(body.complete(), body))
}

fn answer(complete: bool, body: impl Serialize) -> Response {
    if complete {
        Json(body).into_response()
    } else {
        unavailable(serde_json::to_value(body).unwrap_or_default())
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
    let grid = match Grid::latest(now_ms(), LEGACY_STEP_MS, LEGACY_BUCKETS) {
        Ok(grid) => grid,
        Err(error) => return unavailable(json!({"message": error.to_string()})),
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
            unavailable(json!({"message": errors.join("; ")}))
        }
    }
}
