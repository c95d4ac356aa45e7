//! Every way a request can fail, and the status and JSON body each gets.
//! Client mistakes are 4xx; overload (429, 503) and Kafka trouble (503) come
//! with Retry-After. A missing or wrong bearer token (API_TOKEN) is
//! answered 401 by `streamproc_kit::auth`, in the same shape (`error`,
//! `message`).

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use streamproc_event::body::BodyError;
use streamproc_kit::error::ErrorResponse;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// What the body says is wrong: the client's mistake, named.
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error("request body is larger than the limit of {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error(
        "a batch of {events} events is more than the {limit} this server takes at once; split it"
    )]
    BatchTooLarge { events: usize, limit: u32 },
    #[error("too many events are waiting for Kafka; retry later")]
    Busy,
    #[error("Kafka did not acknowledge the events: {0}; retry later with the same ids")]
    KafkaUnavailable(String),
    #[error(
        "{limit} requests are in progress already, the most this server takes at once; retry later"
    )]
    Overloaded { limit: u32 },
    #[error("the request body did not arrive within {}; nothing was ingested", humantime::format_duration(*limit))]
    BodyTimeout { limit: Duration },
    #[error("the request was not answered within {}; retry later with the same ids", humantime::format_duration(*limit))]
    RequestTimeout { limit: Duration },
    /// A query parameter the ingest understands has a value it does not.
    #[error("query parameter `{parameter}` {problem}")]
    BadParameter {
        parameter: &'static str,
        problem: String,
    },
}

/// Seconds a client should wait before retrying a 429 or 503.
const RETRY_AFTER_SECS: u32 = 1;

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Body(BodyError::UnsupportedMediaType(_)) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::BodyTooLarge { .. }
            | Self::BatchTooLarge { .. }
            | Self::Body(BodyError::TooManyEvents { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Body(_) | Self::BadParameter { .. } => StatusCode::BAD_REQUEST,
            Self::Busy => StatusCode::TOO_MANY_REQUESTS,
            Self::KafkaUnavailable(_) | Self::Overloaded { .. } | Self::RequestTimeout { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
        }
    }

    /// Seconds the client should wait before retrying: 429 and 503 only.
    pub fn retry_after(&self) -> Option<u32> {
        matches!(
            self.status(),
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        )
        .then_some(RETRY_AFTER_SECS)
    }

    /// The rest of the body may still be on its way: the connection cannot
    /// carry another request after the answer.
    pub fn closes_connection(&self) -> bool {
        matches!(self, Self::BodyTimeout { .. })
    }

    /// One error of each kind, for the OpenAPI document, which lists each
    /// status with its codes and headers.
    pub fn each() -> Vec<Self> {
        let each = vec![
            Self::Body(BodyError::UnsupportedMediaType(String::new())),
            Self::Body(BodyError::Malformed(String::new())),
            Self::Body(BodyError::NoEvents),
            Self::Body(BodyError::InvalidEvents {
                total: 0,
                invalid: 0,
                errors: Vec::new(),
            }),
            Self::Body(BodyError::TooManyEvents { limit: 0 }),
            Self::BodyTooLarge { limit: 0 },
            Self::BatchTooLarge {
                events: 0,
                limit: 0,
            },
            Self::Busy,
            Self::KafkaUnavailable(String::new()),
            Self::Overloaded { limit: 0 },
            Self::BodyTimeout {
                limit: Duration::ZERO,
            },
            Self::RequestTimeout {
                limit: Duration::ZERO,
            },
            Self::BadParameter {
                parameter: "",
                problem: String::new(),
            },
        ];
        // A new kind of error does not compile here until it is listed above.
        for error in &each {
            match error {
                Self::Body(
                    BodyError::UnsupportedMediaType(_)
                    | BodyError::Malformed(_)
                    | BodyError::NoEvents
                    | BodyError::InvalidEvents { .. }
                    | BodyError::TooManyEvents { .. },
                )
                | Self::BodyTooLarge { .. }
                | Self::BatchTooLarge { .. }
                | Self::Busy
                | Self::KafkaUnavailable(_)
                | Self::Overloaded { .. }
                | Self::BodyTimeout { .. }
                | Self::RequestTimeout { .. }
                | Self::BadParameter { .. } => {}
            }
        }
        each
    }

    /// A stable, machine-readable name for the error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Body(error) => error.code(),
            Self::BodyTooLarge { .. } => "body_too_large",
            Self::BatchTooLarge { .. } => "batch_too_large",
            Self::Busy => "busy",
            Self::KafkaUnavailable(_) => "kafka_unavailable",
            Self::Overloaded { .. } => "overloaded",
            Self::BodyTimeout { .. } => "body_timeout",
            Self::RequestTimeout { .. } => "request_timeout",
            Self::BadParameter { .. } => "bad_parameter",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = ErrorResponse::new(self.status(), self.code(), self.to_string());
        if let Self::Body(BodyError::InvalidEvents {
            errors, invalid, ..
        }) = &self
        {
            response = response.with("errors", errors);
            if *invalid > errors.len() {
                // Invalid events not listed in `errors`.
                response = response.with("errors_omitted", invalid - errors.len());
            }
        }
        if let Self::BadParameter { parameter, .. } = &self {
            response = response.with("parameter", parameter);
        }
        if let Some(secs) = self.retry_after() {
            response = response.retry_after(secs);
        }
        if self.closes_connection() {
            response = response.close_connection();
        }
        response.into_response()
    }
}
