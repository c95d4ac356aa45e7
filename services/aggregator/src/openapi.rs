//! The OpenAPI document served at `/openapi.json`, generated from the
//! handlers (`#[utoipa::path]`), the types they answer with, and the
//! constants that bound the queries: nothing in it is maintained by hand.

use streamproc_kit::auth::{self, Unauthorized, BEARER_SCHEME};
use streamproc_kit::{openapi, ops};
use utoipa::openapi::RefOr;
use utoipa::{Modify, OpenApi};

use crate::pipeline::Stage;
use crate::schema::{ErrorBody, GridQuery, Step, StreamQuery, Time};
use crate::series::Point;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "StreamProc aggregator",
        description = "Reads both stores concurrently and answers their events as time series \
            on one epoch-aligned grid: the high series (amount above the watermark) from \
            TimescaleDB, the low series from InfluxDB. A store that fails is named (503 with \
            that series marked unavailable), never shown as zeros. It also watches the whole \
            pipeline (event-api, Kafka, each consumer group, each store) and answers each \
            stage's status, reason and figures at /api/v1/pipeline and on the live stream. With \
            API_TOKEN set, /api and /api/v1/* require `Authorization: Bearer <token>` (401 \
            otherwise); probes, metrics and this document stay open.",
    ),
    paths(
        crate::api::legacy,
        crate::api::series,
        crate::stream::stream,
        crate::api::pipeline,
        crate::api::totals,
        crate::lookup::event,
        crate::lookup::dead_letters,
        crate::lookup::dead_letter,
        crate::reconcile::reconcile,
    ),
    components(
        schemas(ErrorBody, Time, Step, GridQuery, StreamQuery, Point, Stage),
        responses(Unauthorized),
    ),
    modifiers(&Completion),
)]
struct ApiDoc;

/// The document as served.
pub fn document() -> String {
    openapi::to_json(ApiDoc::openapi())
}

/// What the derive cannot say: the security scheme, the probes, and the
/// `Retry-After` of every 503.
struct Completion;

impl Modify for Completion {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        doc.components
            .get_or_insert_with(Default::default)
            .security_schemes
            .insert(
                BEARER_SCHEME.into(),
                auth::bearer_scheme(
                    "Only when the aggregator runs with API_TOKEN (or API_TOKEN_FILE) set: then \
                     /api and every /api/v1/* path, the stream and the pipeline included, require \
                     `Authorization: Bearer <token>`. Without it they are open, hence the empty \
                     alternative in each operation's `security`. web-ui sends the token itself \
                     (AGGREGATOR_TOKEN); the browser never sees it. Probes, /metrics and this \
                     document are always open.",
                ),
            );
        // Every 503 asks the client to come back: an ApiError's (see
        // `ApiError::retry_after`) and a partial answer's (`api::answer`).
        for item in doc.paths.paths.values_mut() {
            if let Some(get) = &mut item.get {
                if let Some(RefOr::T(unavailable)) = get.responses.responses.get_mut("503") {
                    unavailable
                        .headers
                        .insert("Retry-After".into(), openapi::retry_after_header());
                }
            }
        }
        // The probes first, then the service's own paths.
        let mut paths = ops::document("Both stores answer").paths;
        paths.merge(std::mem::take(&mut doc.paths));
        doc.paths = paths;
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use serde_json::Value;
    use streamproc_grid::{GRID_PARAMETERS, MAX_POINTS, MAX_QUERY_TIME_MS, STREAM_PARAMETERS};

    use super::*;
    use crate::error::ApiError;

    /// Every operation: those of the hand-written document this one
    /// replaced, and the lookups.
    const OPERATIONS: [(&str, &str); 14] = [
        ("/", "get"),
        ("/api", "get"),
        ("/api/v1/series", "get"),
        ("/api/v1/stream", "get"),
        ("/api/v1/pipeline", "get"),
        ("/api/v1/totals", "get"),
        ("/api/v1/reconcile", "get"),
        ("/api/v1/events/{id}", "get"),
        ("/api/v1/dead-letters", "get"),
        ("/api/v1/dead-letters/{partition}/{offset}", "get"),
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

    /// Every code an answer can carry is listed, and every 503 says when
    /// to come back, as the document promises.
    #[test]
    fn every_error_is_documented() {
        let spec = spec();
        let codes = &spec["components"]["schemas"]["Error"]["properties"]["error"]["enum"];
        for error in ApiError::each() {
            assert!(
                codes.as_array().unwrap().contains(&error.code().into()),
                "{}",
                error.code()
            );
            match error.status() {
                StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND => {
                    assert_eq!(error.retry_after(), None)
                }
                StatusCode::SERVICE_UNAVAILABLE => assert!(error.retry_after().is_some()),
                other => panic!("{other} is not in the document"),
            }
        }
        let parameters = &spec["components"]["schemas"]["Error"]["properties"]["parameter"]["enum"];
        let lookups = crate::lookup::PARAMETERS;
        for parameter in GRID_PARAMETERS
            .into_iter()
            .chain(STREAM_PARAMETERS)
            .chain(lookups)
        {
            assert!(
                parameters.as_array().unwrap().contains(&parameter.into()),
                "{parameter}"
            );
        }
        let schemas = &spec["components"]["schemas"];
        assert_eq!(schemas["Time"]["anyOf"][0]["maximum"], MAX_QUERY_TIME_MS);
        // A part holds its data's fields, flattened.
        let series = &schemas["Series"]["properties"]["high"]["properties"];
        assert_eq!(
            series["points"]["items"]["$ref"],
            "#/components/schemas/Point"
        );
        let totals = &schemas["Totals"]["properties"]["low"]["properties"];
        assert!(totals["last_time"].is_object(), "{totals}");
        assert_eq!(
            schemas["StreamQuery"]["properties"]["last"]["maximum"],
            MAX_POINTS
        );
    }
}
