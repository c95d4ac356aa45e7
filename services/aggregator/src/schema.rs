//! The schemas of the query API's parameters and error answers that no
//! Rust type derives: built from the grid's constants and the error codes,
//! so the document cannot drift from what the code enforces. The handlers
//! name them in their `#[utoipa::path]`; `crate::openapi` assembles the
//! document.

use serde_json::json;
use streamproc_grid::{
    DEFAULT_LAST, DEFAULT_MAX_POINTS, DEFAULT_RANGE_MS, DEFAULT_STEP_MS, GRID_PARAMETERS,
    MAX_POINTS, MAX_QUERY_TIME_MS, MAX_STEP_MS, STREAM_PARAMETERS,
};
use streamproc_kit::auth::UNAUTHORIZED;
use streamproc_kit::error::{error_body, error_schema, ERROR_SCHEMA};
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn, ParameterStyle};
use utoipa::openapi::schema::{AllOfBuilder, AnyOfBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::{Ref, RefOr, Required};
use utoipa::{IntoParams, PartialSchema, ToSchema};

use crate::answers::{SeriesBody, TotalsBody};
use crate::error::ApiError;

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
        parameters.extend(crate::lookup::PARAMETERS);
        let parameter = ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(parameters))
            .description(Some("The query or path parameter at fault (400 only)"));
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

or_error!(SeriesOrError, SeriesBody);
or_error!(TotalsOrError, TotalsBody);

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
