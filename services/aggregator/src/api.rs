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
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use streamproc_event::EventTime;
use streamproc_kit::auth::Unauthorized;
use streamproc_kit::error::ErrorResponse;

use crate::metrics::Rejection;
use crate::openapi::{BadParameter, ErrorBody, GridQuery, SeriesOrError, TotalsOrError};
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

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadParameter(_) => StatusCode::BAD_REQUEST,
            Self::Disabled
            | Self::Busy(_)
            | Self::Timeout(_)
            | Self::Off(_)
            | Self::Clock(_)
            | Self::StoresFailed(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Seconds to wait before asking again: every 503 says.
    pub fn retry_after(&self) -> Option<u32> {
        match self {
            Self::BadParameter(_) => None,
            Self::Busy(_) | Self::Timeout(_) => Some(BUSY_RETRY_AFTER_SECONDS),
            Self::Disabled | Self::Off(_) | Self::Clock(_) | Self::StoresFailed(_) => {
                Some(RETRY_AFTER_SECONDS)
            }
        }
    }

    /// One error of each kind, for the OpenAPI document's codes.
    pub fn each() -> Vec<Self> {
        let each = vec![
            Self::BadParameter(GridError::StepAndMaxPoints),
            Self::Disabled,
            Self::Busy(""),
            Self::Timeout(Duration::ZERO),
            Self::Off(""),
            Self::Clock(GridError::AfterEnd),
            Self::StoresFailed(String::new()),
        ];
        // A new kind of error does not compile here until it is listed above.
        for error in &each {
            match error {
                Self::BadParameter(_)
                | Self::Disabled
                | Self::Busy(_)
                | Self::Timeout(_)
                | Self::Off(_)
                | Self::Clock(_)
                | Self::StoresFailed(_) => {}
            }
        }
        each
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = ErrorResponse::new(self.status(), self.code(), self.to_string());
        if let Self::BadParameter(error) = &self {
            response = response.with("parameter", error.param());
        }
        if let Some(secs) = self.retry_after() {
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

/// The schema of a `Part<T>`: `store`, `available`, `error`, and the fields
/// of `T`, present only when the store answered.
fn part_schema<T: ToSchema>() -> RefOr<Schema> {
    let available = ObjectBuilder::new()
        .schema_type(Type::Boolean)
        .description(Some(
            "false when the store failed or timed out; error says why and the data is absent",
        ));
    let error = ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(
            "Why the store gave no answer (when available is false)",
        ));
    let part = ObjectBuilder::new()
        .schema_type(Type::Object)
        .required("store")
        .required("available")
        .property("store", Store::schema())
        .property("available", available)
        .property("error", error);
    // `T`'s fields are flattened into the part, and absent when it failed.
    let data = match T::schema() {
        RefOr::T(Schema::Object(data)) => data.properties,
        _ => unreachable!("{} is a struct", T::name()),
    };
    data.into_iter()
        .fold(part, |part, (name, schema)| part.property(name, schema))
        .into()
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

#[derive(Debug, Serialize, ToSchema)]
pub struct Points {
    /// One per bucket, empty ones included, oldest first.
    pub points: Vec<Point>,
}

/// Both series on one grid; also the payload of each stream event.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Series)]
pub struct SeriesBody {
    /// Start of the first bucket, Unix ms.
    pub from: i64,
    /// End of the last bucket (exclusive), Unix ms.
    pub to: i64,
    /// Bucket width in ms.
    pub step: i64,
    /// Events with amount above the watermark, from TimescaleDB.
    #[schema(schema_with = part_schema::<Points>)]
    pub high: Part<Points>,
    /// The other events, from InfluxDB.
    #[schema(schema_with = part_schema::<Points>)]
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

/// Everything each store holds.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Totals)]
pub struct TotalsBody {
    /// TimescaleDB's.
    #[schema(schema_with = part_schema::<Totals>)]
    pub high: Part<Totals>,
    /// InfluxDB's.
    #[schema(schema_with = part_schema::<Totals>)]
    pub low: Part<Totals>,
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

/// `/api`'s answer.
#[derive(Serialize, ToSchema)]
pub struct Legacy {
    /// `ok`, or that DISABLE is set.
    message: &'static str,
    /// Both types for every bucket start, sorted by time.
    points: Vec<LegacyPoint>,
}

#[derive(Serialize, ToSchema)]
struct LegacyPoint {
    /// Bucket start, Unix ms.
    time: i64,
    count: u64,
    #[serde(rename = "type")]
    #[schema(inline)]
    kind: Kind,
}

/// Which series a point of `/api` counts.
#[derive(Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Low,
    High,
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
