//! Errors at the edges of a service: a whole cause chain for a log line, and
//! the one JSON body every StreamProc HTTP API answers an error with.
//!
//! The body is `{"error": <stable code>, "message": <for a human>, …}` plus
//! fields that name what was wrong (event-api's `errors`, the aggregator's
//! `parameter`). Clients branch on `error`; `message` may change.
//! [`error_schema`] describes that body in each service's OpenAPI document.

use std::error::Error;
use std::fmt;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::{Ref, RefOr};

/// Any error, boxed: what a readiness check or a sink passes on when the
/// cause comes from a library it does not name in its own type.
pub type BoxError = Box<dyn Error + Send + Sync + 'static>;

/// Displays an error and each of its sources, `outer: inner: innermost`, for
/// a log field: `warn!(error = %Chain(&e), "…")`.
pub struct Chain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut printed = self.0.to_string();
        let mut source = self.0.source();
        while let Some(error) = source {
            // `#[error(transparent)]` and "…: {0}" messages already hold
            // their source's text: print each cause once.
            let text = error.to_string();
            if !printed.ends_with(&text) {
                printed.push_str(": ");
                printed.push_str(&text);
            }
            source = error.source();
        }
        f.write_str(&printed)
    }
}

/// An error answer: status, `Retry-After` when the client should come back,
/// and the shared JSON body.
#[derive(Debug)]
pub struct ErrorResponse {
    status: StatusCode,
    retry_after_secs: Option<u32>,
    close: bool,
    body: Map<String, Value>,
}

impl ErrorResponse {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        let mut body = Map::new();
        body.insert("error".into(), code.into());
        body.insert("message".into(), Value::String(message.into()));
        Self {
            status,
            retry_after_secs: None,
            close: false,
            body,
        }
    }

    /// Adds a field beside `error` and `message` (it never replaces them).
    pub fn with(mut self, field: &'static str, value: impl Serialize) -> Self {
        if let Ok(value) = serde_json::to_value(value) {
            self.body.entry(field).or_insert(value);
        }
        self
    }

    /// Tells the client when to retry (429 and 503 answers).
    pub fn retry_after(mut self, secs: u32) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    /// Closes the connection after the answer: the rest of a request body
    /// may still be on its way, and nothing can follow it.
    pub fn close_connection(mut self) -> Self {
        self.close = true;
        self
    }
}

impl IntoResponse for ErrorResponse {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        let headers = response.headers_mut();
        if let Some(secs) = self.retry_after_secs {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.close {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// The name of the error body's schema in each service's OpenAPI document.
pub const ERROR_SCHEMA: &str = "Error";

/// The body [`ErrorResponse`] answers with, as a JSON Schema: `error`, one of
/// the service's `codes`, `message`, and the service's `details` (fields
/// added with [`ErrorResponse::with`]), which are optional.
pub fn error_schema(
    codes: &[&'static str],
    details: impl IntoIterator<Item = (&'static str, RefOr<Schema>)>,
) -> Schema {
    let object = ObjectBuilder::new()
        .schema_type(Type::Object)
        .required("error")
        .required("message")
        .property(
            "error",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some("A stable code for what went wrong"))
                .enum_values(Some(codes.iter().copied())),
        )
        .property(
            "message",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some("What is wrong, for people; it may change")),
        );
    details
        .into_iter()
        .fold(object, |object, (name, schema)| {
            object.property(name, schema)
        })
        .into()
}

/// An error body whose `error` is one of `codes` (a subset of the service's)
/// and which carries the `required` details: [`ERROR_SCHEMA`] narrowed.
pub fn error_body(codes: &[&'static str], required: &[&'static str]) -> RefOr<Schema> {
    let narrowed = ObjectBuilder::new().property(
        "error",
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(codes.iter().copied())),
    );
    let narrowed = required
        .iter()
        .fold(narrowed, |narrowed, field| narrowed.required(*field));
    AllOfBuilder::new()
        .item(Ref::from_schema_name(ERROR_SCHEMA))
        .item(narrowed)
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("cannot store the batch")]
        Store(#[source] std::io::Error),
        #[error(transparent)]
        Same(std::io::Error),
    }

    #[test]
    fn a_chain_names_every_cause_once() {
        let inner = || std::io::Error::other("disk full");
        assert_eq!(
            Chain(&Outer::Store(inner())).to_string(),
            "cannot store the batch: disk full"
        );
        assert_eq!(Chain(&Outer::Same(inner())).to_string(), "disk full");
    }

    #[tokio::test]
    async fn the_body_holds_code_message_and_details() {
        let response = ErrorResponse::new(StatusCode::SERVICE_UNAVAILABLE, "busy", "later")
            .with("parameter", "step")
            .with("error", "ignored")
            .retry_after(1)
            .into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"error": "busy", "message": "later", "parameter": "step"})
        );
    }
}
