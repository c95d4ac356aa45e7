//! `POST /` and `POST /v1/events`: validate the whole batch, write it to
//! Kafka, and answer 200 only after Kafka acknowledged every event.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use serde::Serialize;
use streamproc::EventTime;
use tokio::sync::{Semaphore, TryAcquireError};

use crate::body::{self, BodyFormat};
use crate::error::ApiError;
use crate::metrics::ApiMetrics;
use crate::publisher::{PublishError, Publisher};

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
    pub metrics: ApiMetrics,
}

#[derive(Debug, Serialize)]
pub struct Ingested {
    pub message: String,
    pub ingested: usize,
}

pub async fn ingest(
    State(state): State<IngestState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Ingested>, ApiError> {
    let publisher = match state.intake.as_ref() {
        Intake::Kafka(publisher) => publisher,
        Intake::Disabled => {
            return Ok(Json(Ingested {
                message: "processing disabled, did nothing".into(),
                ingested: 0,
            }))
        }
    };
    let format = BodyFormat::from_content_type(headers.get(header::CONTENT_TYPE))?;
    let body = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::BodyTooLarge {
            limit: state.max_body_bytes,
        },
        _ => ApiError::MalformedBody(rejection.body_text()),
    })?;
    let events = body::parse(format, &body, EventTime::now()).inspect_err(|error| {
        if let ApiError::InvalidEvents { errors, .. } = error {
            state.metrics.events_rejected.inc_by(errors.len() as u64);
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

    state.metrics.events_in_flight.inc_by(count as i64);
    let published = publisher.publish(&events).await;
    state.metrics.events_in_flight.dec_by(count as i64);
    match published {
        Ok(took) => {
            state.metrics.kafka_ack_seconds.observe(took.as_secs_f64());
            state.metrics.events_accepted.inc_by(count as u64);
            Ok(Json(Ingested {
                message: format!("ingested {count} events"),
                ingested: count,
            }))
        }
        Err(PublishError::QueueFull) => Err(ApiError::Busy),
        Err(error) => {
            state.metrics.kafka_failures.inc();
            tracing::warn!("answering 503: {error}");
            Err(ApiError::KafkaUnavailable(error.to_string()))
        }
    }
}
