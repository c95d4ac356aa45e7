//! The OpenAPI document served at `/openapi.json`, generated from the
//! handlers (`#[utoipa::path]`), the types they read and answer with, and
//! the constants that bound them: nothing in it is maintained by hand.
//! Every bound is a setting; the document states the defaults.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use streamproc_event::body::{ItemError, MAX_LISTED_ERRORS};
use streamproc_event::schema::EventSchema;
use streamproc_kit::auth::{self, Unauthorized, BEARER_SCHEME, UNAUTHORIZED};
use streamproc_kit::error::{error_body, error_schema, ERROR_SCHEMA};
use streamproc_kit::{openapi, ops};
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::{Content, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{IntoResponses, Modify, OpenApi, ToSchema};

use crate::config::{
    DEFAULT_BODY_READ_TIMEOUT, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_CONCURRENT_REQUESTS,
    DEFAULT_MAX_EVENTS_PER_REQUEST, DEFAULT_MAX_IN_FLIGHT_EVENTS, DEFAULT_REQUEST_TIMEOUT,
};
use crate::error::ApiError;
use crate::ingest::{Ingested, Receipt};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "StreamProc event-api",
        description = "Takes events over HTTP and writes them to Kafka. A 200 means Kafka \
            acknowledged every event of the request; a batch with any invalid event writes \
            nothing. Every bound is a setting (see the README): MAX_BODY_BYTES, \
            MAX_EVENTS_PER_REQUEST, MAX_IN_FLIGHT_EVENTS, MAX_CONCURRENT_REQUESTS, \
            BODY_READ_TIMEOUT, REQUEST_TIMEOUT, EVENT_MAX_AMOUNT, EVENT_MAX_AGE, \
            EVENT_MAX_AHEAD; this document states their defaults. With API_TOKEN set, the \
            ingest paths require `Authorization: Bearer <token>` (401 otherwise); probes, \
            metrics and this document stay open.",
    ),
    paths(crate::ingest::ingest),
    components(schemas(EventSchema, ItemError, Ingested, Receipt), responses(Unauthorized)),
    modifiers(&Completion),
)]
struct ApiDoc;

/// The document as served.
pub fn document() -> String {
    openapi::to_json(ApiDoc::openapi())
}

/// What the derive cannot say: the error body and answers, the security
/// scheme, the probes, and `POST /`.
struct Completion;

impl Modify for Completion {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components
            .schemas
            .insert(ERROR_SCHEMA.into(), error_schema_of_event_api().into());
        for (_, name, response) in error_responses() {
            components.responses.insert(name.into(), response.into());
        }
        components.security_schemes.insert(
            BEARER_SCHEME.into(),
            auth::bearer_scheme(
                "Only when event-api runs with API_TOKEN (or API_TOKEN_FILE) set: then every \
                 ingest request must send `Authorization: Bearer <token>`. Without it the ingest \
                 paths are open, hence the empty alternative in each operation's `security`. \
                 Probes, /metrics and this document are always open.",
            ),
        );
        // The probes first, then the service's own paths.
        let mut paths =
            ops::document("Kafka answers and the topic exists (always ready when DISABLE is set)")
                .paths;
        paths.merge(std::mem::take(&mut doc.paths));
        doc.paths = paths;
        // `POST /` is the Go version's path for the same operation.
        let ingest = doc
            .paths
            .paths
            .get("/v1/events")
            .and_then(|item| item.post.clone());
        if let (Some(mut ingest), Some(root)) = (ingest, doc.paths.paths.get_mut("/")) {
            ingest.operation_id = Some("ingest_root".into());
            ingest.summary =
                Some("Ingest events (the Go version's path; same as POST /v1/events)".into());
            root.post = Some(ingest);
        }
    }
}

/// The shared error body with event-api's codes and details.
fn error_schema_of_event_api() -> Schema {
    let mut codes: Vec<&'static str> = ApiError::each().iter().map(ApiError::code).collect();
    codes.push(UNAUTHORIZED);
    let errors = ArrayBuilder::new()
        .items(Ref::from_schema_name(ItemError::name()))
        .max_items(Some(MAX_LISTED_ERRORS))
        .description(Some(format!(
            "invalid_events only: the first {MAX_LISTED_ERRORS} invalid events, in body order"
        )));
    let omitted = ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(1))
        .description(Some(format!(
            "invalid_events only, when more than {MAX_LISTED_ERRORS} events are invalid: how \
             many more are not listed"
        )));
    let parameter = ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some("bad_parameter only: the query parameter it is about"));
    error_schema(
        &codes,
        [
            ("errors", errors.into()),
            ("errors_omitted", omitted.into()),
            ("parameter", parameter.into()),
        ],
    )
}

/// Each error status of the ingest paths: its name among the document's
/// responses, and the answer, with the codes of every [`ApiError`] of that
/// status and the headers they come with.
fn error_responses() -> Vec<(StatusCode, &'static str, Response)> {
    let mut by_status: BTreeMap<u16, Vec<ApiError>> = BTreeMap::new();
    for error in ApiError::each() {
        by_status
            .entry(error.status().as_u16())
            .or_default()
            .push(error);
    }
    by_status
        .into_values()
        .map(|errors| {
            let status = errors[0].status();
            let (name, description) = describe(status);
            let codes: Vec<&'static str> = errors.iter().map(ApiError::code).collect();
            let mut response = ResponseBuilder::new().description(description).content(
                "application/json",
                Content::new(Some(error_body(&codes, &[]))),
            );
            if errors.iter().any(|e| e.retry_after().is_some()) {
                response = response.header("Retry-After", openapi::retry_after_header());
            }
            if errors.iter().any(ApiError::closes_connection) {
                let close = ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(["close"]));
                response =
                    response.header("Connection", HeaderBuilder::new().schema(close).build());
            }
            (status, name, response.build())
        })
        .collect()
}

/// The name and description of each error status.
fn describe(status: StatusCode) -> (&'static str, String) {
    match status {
        StatusCode::BAD_REQUEST => (
            "BadRequest",
            "Malformed body (not JSON, not UTF-8, neither an array nor an object), no events, \
             or invalid events (`errors` names each by index, line and field); nothing was \
             written"
                .into(),
        ),
        StatusCode::REQUEST_TIMEOUT => (
            "BodyTimeout",
            format!(
                "The body did not arrive within BODY_READ_TIMEOUT (default \
                 {DEFAULT_BODY_READ_TIMEOUT}); nothing was written, and the connection is closed"
            ),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "TooLarge",
            format!(
                "The body is larger than MAX_BODY_BYTES (default {DEFAULT_MAX_BODY_BYTES}), or \
                 holds more events than MAX_EVENTS_PER_REQUEST (default \
                 {DEFAULT_MAX_EVENTS_PER_REQUEST}; `too_many_events`) or MAX_IN_FLIGHT_EVENTS \
                 (default {DEFAULT_MAX_IN_FLIGHT_EVENTS}; `batch_too_large`); nothing was written"
            ),
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "UnsupportedMediaType",
            "Missing or unsupported Content-Type; the message lists the accepted ones".into(),
        ),
        StatusCode::TOO_MANY_REQUESTS => (
            "Busy",
            "More than MAX_IN_FLIGHT_EVENTS events are waiting for Kafka; nothing was written. \
             Retry after Retry-After seconds"
                .into(),
        ),
        StatusCode::SERVICE_UNAVAILABLE => (
            "Unavailable",
            format!(
                "Kafka did not acknowledge within KAFKA_DELIVERY_TIMEOUT or no broker is \
                 reachable (`kafka_unavailable`; some events may be in Kafka: retry with the same \
                 ids), MAX_CONCURRENT_REQUESTS (default {DEFAULT_MAX_CONCURRENT_REQUESTS}) \
                 requests are in progress already (`overloaded`, answered at once, nothing \
                 written), or the request took longer than REQUEST_TIMEOUT (default \
                 {DEFAULT_REQUEST_TIMEOUT}; `request_timeout`, retry with the same ids). Retry \
                 after Retry-After seconds"
            ),
        ),
        other => ("Error", format!("{other}")),
    }
}

/// The ingest paths' error answers, by reference to the document's responses.
impl IntoResponses for ApiError {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        error_responses()
            .into_iter()
            .map(|(status, name, _)| {
                (
                    status.as_u16().to_string(),
                    Ref::from_response_name(name).into(),
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;
    use streamproc_event::body::{JSON_TYPE, LINE_TYPES};
    use streamproc_event::{EventBounds, MAX_ID_LEN, MAX_TIME_MS};

    use super::*;

    /// Every operation of the hand-written document this one replaced.
    const OPERATIONS: [(&str, &str); 7] = [
        ("/", "get"),
        ("/", "post"),
        ("/v1/events", "post"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/openapi.json", "get"),
    ];

    fn spec() -> Value {
        serde_json::from_str(&crate::OPENAPI).expect("the document is JSON")
    }

    #[test]
    fn the_document_is_openapi_3_with_every_operation() {
        openapi::check_document(&crate::OPENAPI, &OPERATIONS).unwrap();
    }

    /// The numbers in the document are the ones the code enforces.
    #[test]
    fn the_limits_are_the_enforced_ones() {
        let spec = spec();
        let event = &spec["components"]["schemas"]["Event"];
        let amount = &event["properties"]["amount"]["oneOf"][0];
        assert_eq!(amount["maximum"], EventBounds::DEFAULT.max_amount);
        assert_eq!(amount["minimum"], -EventBounds::DEFAULT.max_amount);
        assert_eq!(event["properties"]["id"]["maxLength"], MAX_ID_LEN);
        assert_eq!(event["properties"]["time"]["maximum"], MAX_TIME_MS);
        let error = &spec["components"]["schemas"]["Error"];
        assert_eq!(error["properties"]["errors"]["maxItems"], MAX_LISTED_ERRORS);
        for path in ["/", "/v1/events"] {
            let body = &spec["paths"][path]["post"]["requestBody"]["content"];
            let mut types: Vec<&str> = body
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            let mut expected: Vec<&str> = LINE_TYPES.iter().copied().chain([JSON_TYPE]).collect();
            types.sort_unstable();
            expected.sort_unstable();
            assert_eq!(types, expected, "{path}");
            let batch = &body[JSON_TYPE]["schema"]["oneOf"][0];
            assert_eq!(batch["maxItems"], DEFAULT_MAX_EVENTS_PER_REQUEST, "{path}");
        }
    }

    /// Each error answers with its status, its code and its headers.
    #[test]
    fn every_error_is_documented_with_its_status_and_headers() {
        let spec = spec();
        let responses = &spec["components"]["responses"];
        let operation = &spec["paths"]["/v1/events"]["post"]["responses"];
        for error in ApiError::each() {
            let status = error.status();
            let (name, _) = describe(status);
            assert_ne!(name, "Error", "{status} has no description");
            let reference = format!("#/components/responses/{name}");
            assert_eq!(operation[status.as_str()]["$ref"], reference.as_str());
            let response = &responses[name];
            let codes = &response["content"]["application/json"]["schema"]["allOf"][1];
            let codes = codes["properties"]["error"]["enum"].as_array().unwrap();
            assert!(codes.contains(&error.code().into()), "{}", error.code());
            let headers = &response["headers"];
            if error.retry_after().is_some() {
                assert_eq!(headers["Retry-After"]["required"], true, "{name}");
            }
            if error.closes_connection() {
                assert_eq!(
                    headers["Connection"]["schema"]["enum"][0], "close",
                    "{name}"
                );
            }
        }
        let challenge = &responses["Unauthorized"]["headers"]["WWW-Authenticate"];
        assert_eq!(challenge["required"], true);
    }
}
