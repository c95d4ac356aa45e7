//! The OpenAPI document served at `/openapi.json`, generated from the
//! handlers (`#[utoipa::path]`), the types they answer with, and the
//! constants that bound the queries: nothing in it is maintained by hand.

use serde_json::json;
use streamproc_grid::{
    DEFAULT_LAST, DEFAULT_MAX_POINTS, DEFAULT_RANGE_MS, DEFAULT_STEP_MS, GRID_PARAMETERS,
    MAX_POINTS, MAX_QUERY_TIME_MS, MAX_STEP_MS, STREAM_PARAMETERS,
};
use streamproc_kit::auth::{self, Unauthorized, BEARER_SCHEME, UNAUTHORIZED};
use streamproc_kit::error::{error_body, error_schema, ERROR_SCHEMA};
use streamproc_kit::{openapi, ops};
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn, ParameterStyle};
use utoipa::openapi::schema::{AllOfBuilder, AnyOfBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::{Ref, RefOr, Required};
use utoipa::{IntoParams, Modify, OpenApi, PartialSchema, ToSchema};

use crate::api::ApiError;
use crate::pipeline::Stage;
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
        crate::openapi_json,
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

/// The error body shared with event-api (`Error`), with the aggregator's
/// codes and its detail, `parameter`.
pub struct ErrorBody;

impl ToSchema for ErrorBody {
    fn name() -> std::borrow::Cow<'static, str> {
        ERROR_SCHEMA.into()
    }
}

impl PartialSchema for ErrorBody {
    fn schema() -> RefOr<Schema> {
        let mut codes: Vec<&'static str> = ApiError::each().iter().map(ApiError::code).collect();
        codes.push(UNAUTHORIZED);
        let mut parameters = GRID_PARAMETERS.to_vec();
        parameters.extend(
            STREAM_PARAMETERS
                .iter()
                .filter(|p| !GRID_PARAMETERS.contains(p)),
        );
        let parameter = ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(parameters))
            .description(Some("The query parameter at fault (400 only)"));
        error_schema(&codes, [("parameter", parameter.into())]).into()
    }
}

/// A 400: the error body naming the `parameter` at fault.
pub struct BadParameter;

impl ToSchema for BadParameter {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((ErrorBody::name().into(), ErrorBody::schema()));
    }
}

impl PartialSchema for BadParameter {
    fn schema() -> RefOr<Schema> {
        let bad = ApiError::BadParameter(streamproc_grid::GridError::StepAndMaxPoints);
        error_body(&[bad.code()], &["parameter"])
    }
}

/// A 503 of `/api/v1/series`: what the stores answered (one of them
/// failed), or the error body.
pub struct SeriesOrError;

/// The same for `/api/v1/totals`.
pub struct TotalsOrError;

macro_rules! or_error {
    ($name:ident, $answer:ty) => {
        impl ToSchema for $name {
            fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
                schemas.push((<$answer>::name().into(), <$answer>::schema()));
                <$answer>::schemas(schemas);
                schemas.push((ErrorBody::name().into(), ErrorBody::schema()));
            }
        }

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                AnyOfBuilder::new()
                    .item(Ref::from_schema_name(<$answer>::name()))
                    .item(Ref::from_schema_name(ErrorBody::name()))
                    .into()
            }
        }
    };
}

or_error!(SeriesOrError, crate::api::SeriesBody);
or_error!(TotalsOrError, crate::api::TotalsBody);

/// A time a query may name (`from`, `to`).
pub struct Time;

impl ToSchema for Time {}

impl PartialSchema for Time {
    fn schema() -> RefOr<Schema> {
        AnyOfBuilder::new()
            .description(Some(
                "Unix milliseconds (1970 to 2100-01-01), now, or now-<duration>: one or more \
                 <digits><unit> with units ms, s, m, h, d, such as now-1h or now-1h30m, not \
                 reaching before 1970.",
            ))
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0))
                    .maximum(Some(MAX_QUERY_TIME_MS)),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some("^now(-([0-9]+(ms|s|m|h|d))+)?$")),
            )
            .into()
    }
}

/// A bucket width (`step`).
pub struct Step;

impl ToSchema for Step {}

impl PartialSchema for Step {
    fn schema() -> RefOr<Schema> {
        let max_seconds = MAX_STEP_MS / 1_000;
        AnyOfBuilder::new()
            .description(Some(format!(
                "Bucket width in whole seconds, at least 1 s and at most {} days ({max_seconds} \
                 s): a bare number of seconds, or one or more <digits><unit> with units s, m, \
                 h, d, such as 10s, 1m or 1h30m.",
                max_seconds / 86_400
            )))
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(1))
                    .maximum(Some(max_seconds)),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some("^([0-9]+(s|m|h|d))+$")),
            )
            .into()
    }
}

/// `/api/v1/series`'s parameters (read by `streamproc_grid::GridParams`).
pub struct GridQuery;

impl ToSchema for GridQuery {}

impl PartialSchema for GridQuery {
    fn schema() -> RefOr<Schema> {
        // JSON Schema keywords utoipa has no field for.
        let exclusive: Extensions = [("not", json!({"required": ["step", "max_points"]}))]
            .into_iter()
            .collect();
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(format!(
                "from must be before to. step and max_points exclude each other. With step, the \
                 range may hold at most {MAX_POINTS} buckets."
            )))
            .property(
                "from",
                described(
                    Time::name(),
                    format!(
                        "Start. Default: {} minutes before to (not before 1970).",
                        DEFAULT_RANGE_MS / 60_000
                    ),
                ),
            )
            .property("to", described(Time::name(), "End. Default: now.".into()))
            .property("step", Ref::from_schema_name(Step::name()))
            .property(
                "max_points",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(1))
                    .maximum(Some(MAX_POINTS))
                    .description(Some(format!(
                        "Most buckets per series (default {DEFAULT_MAX_POINTS}); the step is the \
                         smallest round one that fits, and rounding the range out to whole \
                         buckets may add one."
                    ))),
            )
            .extensions(Some(exclusive))
            .into()
    }
}

impl IntoParams for GridQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![object_parameter::<Self>(
            "grid",
            "from, to, and step or max_points (not both), each a query parameter of its own; \
             unknown parameters are ignored.",
            json!({
                "step": {"value": {"from": "now-1h", "step": "1m"}},
                "max_points": {"value": {"from": "now-1h", "to": "now", "max_points": 600}},
            }),
        )]
    }
}

/// `/api/v1/stream`'s parameters (read by `streamproc_grid::step_and_last`).
pub struct StreamQuery;

impl ToSchema for StreamQuery {}

impl PartialSchema for StreamQuery {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property(
                "step",
                described(
                    Step::name(),
                    format!("Bucket width (default {}s).", DEFAULT_STEP_MS / 1_000),
                ),
            )
            .property(
                "last",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(1))
                    .maximum(Some(MAX_POINTS))
                    .description(Some(format!(
                        "How many of the newest buckets each event carries (default \
                         {DEFAULT_LAST}); those that would start before 1970 are left out."
                    ))),
            )
            .into()
    }
}

impl IntoParams for StreamQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![object_parameter::<Self>(
            "stream",
            "step and last, each a query parameter of its own; unknown parameters are ignored.",
            json!({"recent": {"value": {"step": "10s", "last": 6}}}),
        )]
    }
}

/// A reference to `schema` with a description of its own.
fn described(schema: std::borrow::Cow<'static, str>, description: String) -> AllOfBuilder {
    AllOfBuilder::new()
        .item(Ref::from_schema_name(schema))
        .description(Some(description))
}

/// An optional query parameter holding the properties of `T`, each sent as
/// a parameter of its own (form style, exploded).
fn object_parameter<T: ToSchema>(
    name: &str,
    description: &str,
    examples: serde_json::Value,
) -> Parameter {
    let examples: Extensions = [("examples", examples)].into_iter().collect();
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .style(Some(ParameterStyle::Form))
        .explode(Some(true))
        .description(Some(description))
        .schema(Some(Ref::from_schema_name(T::name())))
        .extensions(Some(examples))
        .build()
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use serde_json::Value;

    use super::*;

    /// Every operation of the hand-written document this one replaced.
    const OPERATIONS: [(&str, &str); 10] = [
        ("/", "get"),
        ("/api", "get"),
        ("/api/v1/series", "get"),
        ("/api/v1/stream", "get"),
        ("/api/v1/pipeline", "get"),
        ("/api/v1/totals", "get"),
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
        let spec = spec();
        assert!(
            spec["openapi"].as_str().unwrap().starts_with("3."),
            "{}",
            spec["openapi"]
        );
        let mut operations = Vec::new();
        for (path, item) in spec["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                operations.push((path.as_str(), method.as_str()));
            }
        }
        operations.sort_unstable();
        let mut expected = OPERATIONS.to_vec();
        expected.sort_unstable();
        assert_eq!(operations, expected);
        assert_eq!(
            openapi::unresolved_refs(&crate::OPENAPI),
            Vec::<String>::new()
        );
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
                StatusCode::BAD_REQUEST => assert_eq!(error.retry_after(), None),
                StatusCode::SERVICE_UNAVAILABLE => assert!(error.retry_after().is_some()),
                other => panic!("{other} is not in the document"),
            }
        }
        let parameters = &spec["components"]["schemas"]["Error"]["properties"]["parameter"]["enum"];
        for parameter in GRID_PARAMETERS.into_iter().chain(STREAM_PARAMETERS) {
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
