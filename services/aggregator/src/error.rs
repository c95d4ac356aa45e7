//! Every way a query can fail, with its status, stable code and
//! `Retry-After`: answered in the body all StreamProc services share.

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use streamproc_grid::GridError;
use streamproc_kit::error::ErrorResponse;

/// What a disabled aggregator answers, as event-api does.
pub const DISABLED_MESSAGE: &str = "processing disabled, did nothing";

/// Seconds a client should wait before asking again after a 503.
pub(crate) const RETRY_AFTER_SECONDS: u32 = 5;

/// The same when the aggregator is busy rather than a store down: a slot
/// frees as soon as one answer is sent.
pub(crate) const BUSY_RETRY_AFTER_SECONDS: u32 = 1;

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
    /// What was looked up is nowhere it was looked for; says where.
    #[error("{0}")]
    NotFound(String),
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
            Self::NotFound(_) => "not_found",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadParameter(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
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
            Self::BadParameter(_) | Self::NotFound(_) => None,
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
            Self::NotFound(String::new()),
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
                | Self::StoresFailed(_)
                | Self::NotFound(_) => {}
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
