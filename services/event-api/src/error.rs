//! Every way a request can fail, and the status and JSON body each gets.
//! Client mistakes are 4xx; only Kafka trouble is 503, with Retry-After.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::body::ACCEPTED_TYPES;

/// One invalid event of a batch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ItemError {
    /// Position of the event in the batch, from 0.
    pub index: usize,
    /// Line of the body, from 1 (line formats only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'static str>,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("unsupported content type {0:?}; send one of: {ACCEPTED_TYPES}")]
    UnsupportedMediaType(String),
    #[error("request body is larger than the limit of {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("{0}")]
    MalformedBody(String),
    #[error("the body holds no events")]
    NoEvents,
    #[error("{} of {total} events are invalid; nothing was ingested", errors.len())]
    InvalidEvents {
        total: usize,
        errors: Vec<ItemError>,
    },
    #[error(
        "a batch of {events} events is more than the {limit} this server takes at once; split it"
    )]
    BatchTooLarge { events: usize, limit: u32 },
    #[error("too many events are waiting for Kafka; retry later")]
    Busy,
    #[error("Kafka did not acknowledge the events: {0}; retry later with the same ids")]
    KafkaUnavailable(String),
}

/// Seconds a client should wait before retrying a 429 or 503.
const RETRY_AFTER_SECS: &str = "1";

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::BodyTooLarge { .. } | Self::BatchTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::MalformedBody(_) | Self::NoEvents | Self::InvalidEvents { .. } => {
                StatusCode::BAD_REQUEST
            }
            Self::Busy => StatusCode::TOO_MANY_REQUESTS,
            Self::KafkaUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A stable, machine-readable name for the error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::BodyTooLarge { .. } => "body_too_large",
            Self::MalformedBody(_) => "malformed_body",
            Self::NoEvents => "no_events",
            Self::InvalidEvents { .. } => "invalid_events",
            Self::BatchTooLarge { .. } => "batch_too_large",
            Self::Busy => "busy",
            Self::KafkaUnavailable(_) => "kafka_unavailable",
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'static str,
    message: String,
    #[serde(skip_serializing_if = "<[ItemError]>::is_empty")]
    errors: &'a [ItemError],
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let errors = match &self {
            Self::InvalidEvents { errors, .. } => errors.as_slice(),
            _ => &[],
        };
        let body = Json(ErrorBody {
            error: self.code(),
            message: self.to_string(),
            errors,
        });
        let mut response = (status, body).into_response();
        if matches!(self, Self::Busy | Self::KafkaUnavailable(_)) {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                header::HeaderValue::from_static(RETRY_AFTER_SECS),
            );
        }
        response
    }
}
