//! `POST /` and `POST /v1/events`: validate the whole batch, write it to
//! Kafka, and answer 200 only after Kafka acknowledged every event.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{header, HeaderName, StatusCode};
use axum::Json;
use serde::Serialize;
use streamproc_event::LogPosition;
use streamproc_event::{Event, EventBounds, EventTime};
use streamproc_kit::error::Chain;
use tokio::sync::{Semaphore, TryAcquireError};

use crate::error::ApiError;
use crate::metrics::ApiMetrics;
use crate::publisher::{PublishError, Publisher};
use streamproc_event::body::{self, BodyError, BodyFormat};
use streamproc_event::schema::EventLines;
use streamproc_kit::auth::Unauthorized;

/// Where accepted events go.
pub enum Intake {
    Kafka(Publisher),
    /// `DISABLE` / `-x`: answer, write nothing.
    Disabled,
}

#[derive(Clone)]
pub struct IngestState {
    pub intake: Arc<Intake>,
    /// One permit per event waiting for Kafka: bounds memory under load.
    pub in_flight: Arc<Semaphore>,
    pub max_in_flight: u32,
    pub max_body_bytes: usize,
    /// Most events one request may carry (413 above).
    pub max_events_per_request: usize,
    /// What an event may say (400 outside).
    pub bounds: EventBounds,
    pub body_read_timeout: Duration,
    pub metrics: ApiMetrics,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Ingested {
    #[schema(examples("ingested 2 events", "processing disabled, did nothing"))]
    pub message: String,
    /// Events written to Kafka.
    pub ingested: usize,
    /// Only when asked for (`?receipts=true`, or `Prefer:
    /// return=representation`): where each event is, in body order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipts: Option<Vec<Receipt>>,
}

/// Where one accepted event is: enough to find it again in the log and, by
/// id and time, in its store.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Receipt {
    pub id: String,
    /// Unix ms: the client's, or the receipt time event-api gave an event
    /// that came without one.
    pub time: i64,
    /// The Kafka partition of the topic the event was written to.
    pub partition: i32,
    /// Its offset in that partition.
    pub offset: i64,
}

/// The `Prefer` value (RFC 7240) that asks for receipts, as an alternative
/// to the query parameter for clients that keep URLs fixed.
const PREFER_RECEIPTS: &str = "return=representation";
const PREFER: HeaderName = HeaderName::from_static("prefer");

/// Whether the client asked for receipts: `?receipts=true|false` (once), or
/// `Prefer: return=representation`.
fn wants_receipts(request: &Request) -> Result<bool, ApiError> {
    let bad = |problem: String| ApiError::BadParameter {
        parameter: "receipts",
        problem,
    };
    let mut asked = None;
    let query = request.uri().query().unwrap_or_default();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        if name != "receipts" {
            continue;
        }
        if asked.is_some() {
            return Err(bad("is given twice".into()));
        }
        asked = Some(match value.as_ref() {
            "true" | "1" => true,
            "false" | "0" => false,
            other => {
                let shown: String = other.chars().take(40).collect();
                return Err(bad(format!("must be true or false, got {shown:?}")));
            }
        });
    }
    let preferred = request
        .headers()
        .get_all(PREFER)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|preference| preference.trim().eq_ignore_ascii_case(PREFER_RECEIPTS));
    Ok(asked.unwrap_or(preferred))
}

fn receipts(events: &[Event], positions: &[LogPosition]) -> Vec<Receipt> {
    events
        .iter()
        .zip(positions)
        .map(|(event, position)| Receipt {
            id: event.id.as_str().to_owned(),
            time: event.time.as_millis(),
            partition: position.partition,
            offset: position.offset,
        })
        .collect()
}

/// `POST /v1/events`, and `POST /` (the Go version's path), which the
/// document lists as the same operation (`crate::openapi`).
#[utoipa::path(
    post,
    path = "/v1/events",
    operation_id = "ingest",
    summary = "Ingest events",
    description = "Validates every event, then writes each to Kafka and answers 200 only once \
        Kafka acknowledged all of them. A batch with any invalid event writes nothing.",
    params(
        ("receipts" = Option<bool>, Query,
            description = "true: the answer lists each event's receipt (id, time, Kafka partition \
                and offset). Wins over Prefer when both are given."),
        ("Prefer" = Option<String>, Header,
            description = "`return=representation` asks for the receipts too (RFC 7240)"),
    ),
    request_body(
        description = crate::schema::body_description(),
        content(
            (inline(crate::schema::JsonBatch) = body::JSON_TYPE),
            (inline(EventLines) = body::LINE_TYPES[0]),
            (inline(EventLines) = body::LINE_TYPES[1]),
            (inline(EventLines) = body::LINE_TYPES[2]),
        ),
    ),
    responses(
        (status = 200, body = Ingested,
            description = "Kafka acknowledged every event (or DISABLE is set, and nothing was written)"),
        (status = 401, response = Unauthorized),
        ApiError,
    ),
    security(("bearer" = []), ()),
)]
pub async fn ingest(
    State(state): State<IngestState>,
    request: Request,
) -> Result<Json<Ingested>, ApiError> {
    let with_receipts = wants_receipts(&request)?;
    let publisher = match state.intake.as_ref() {
        Intake::Kafka(publisher) => publisher,
        Intake::Disabled => {
            return Ok(Json(Ingested {
                message: "processing disabled, did nothing".into(),
                ingested: 0,
                receipts: with_receipts.then(Vec::new),
            }))
        }
    };
    let format = BodyFormat::from_content_type(
        request
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|value| value.as_bytes()),
    )?;
    let body = read_body(&state, request).await?;
    let received_at = EventTime::now();
    let rules = body::Rules {
        received_at,
        admission: state.bounds.at(received_at),
        max_events: state.max_events_per_request,
    };
    let events = body::parse(format, &body, &rules).inspect_err(|error| {
        if let BodyError::InvalidEvents { invalid, .. } = error {
            state.metrics.events_rejected.inc_by(*invalid as u64);
        }
    })?;

    let count = events.len();
    let permits = u32::try_from(count)
        .ok()
        .filter(|&n| n <= state.max_in_flight)
        .ok_or(ApiError::BatchTooLarge {
            events: count,
            limit: state.max_in_flight,
        })?;
    let _permits = match state.in_flight.clone().try_acquire_many_owned(permits) {
        Ok(permits) => permits,
        Err(TryAcquireError::NoPermits) => return Err(ApiError::Busy),
        Err(TryAcquireError::Closed) => {
            return Err(ApiError::KafkaUnavailable("shutting down".into()))
        }
    };

    let published = {
        let _waiting = InFlight::new(&state.metrics, count);
        publisher.publish(&events).await
    };
    match published {
        Ok((took, positions)) => {
            state.metrics.kafka_ack_seconds.observe(took.as_secs_f64());
            state.metrics.events_accepted.inc_by(count as u64);
            Ok(Json(Ingested {
                message: format!("ingested {count} events"),
                ingested: count,
                receipts: with_receipts.then(|| receipts(&events, &positions)),
            }))
        }
        Err(PublishError::QueueFull) => Err(ApiError::Busy),
        Err(error) => {
            state.metrics.kafka_failures.inc();
            tracing::warn!(
                events = count,
                status = 503,
                error = %Chain(&error),
                "publishing failed; answering 503"
            );
            Err(ApiError::KafkaUnavailable(Chain(&error).to_string()))
        }
    }
}

/// Reads the whole body within `body_read_timeout`: a client that sends its
/// body slowly holds one of the MAX_CONCURRENT_REQUESTS slots meanwhile.
async fn read_body(state: &IngestState, request: Request) -> Result<Bytes, ApiError> {
    match tokio::time::timeout(state.body_read_timeout, Bytes::from_request(request, &())).await {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(rejection)) => Err(match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::BodyTooLarge {
                limit: state.max_body_bytes,
            },
            _ => BodyError::Malformed(rejection.body_text()).into(),
        }),
        Err(_elapsed) => {
            state.metrics.body_timeouts.inc();
            Err(ApiError::BodyTimeout {
                limit: state.body_read_timeout,
            })
        }
    }
}

/// Counts a request's events in `events_in_flight` while it waits for
/// Kafka. A guard, because REQUEST_TIMEOUT may drop the request mid-wait.
struct InFlight<'a> {
    metrics: &'a ApiMetrics,
    count: i64,
}

impl<'a> InFlight<'a> {
    fn new(metrics: &'a ApiMetrics, count: usize) -> Self {
        let count = i64::try_from(count).unwrap_or(i64::MAX);
        metrics.events_in_flight.inc_by(count);
        Self { metrics, count }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.metrics.events_in_flight.dec_by(self.count);
    }
}
