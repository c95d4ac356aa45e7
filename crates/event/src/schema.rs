//! The wire format as JSON Schema, for event-api's OpenAPI document. An
//! event is read from arbitrary JSON ([`crate::Event::from_json`]), not
//! deserialized into a type, so its schema is written here, beside the
//! rules it states; every bound comes from the constants those rules use
//! ([`EventBounds::DEFAULT`] for the settings' defaults).

use std::time::Duration;

use serde_json::json;
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::schema::{
    AdditionalProperties, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type,
};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use crate::{EventBounds, MAX_ID_LEN, MAX_TIME_MS};

/// The fields an [`crate::EventError`] can name (`ItemError::field`).
pub const FIELDS: [&str; 3] = ["amount", "time", "id"];

/// What an id may be, in words, for the documents that take one.
pub const ID_RULE: &str = "1 to 128 bytes of UTF-8 (bytes, not characters, count towards \
    maxLength), no control characters.";

/// An event id: a string of 1 to [`MAX_ID_LEN`] bytes without control
/// characters, as [`crate::EventId::parse`] takes it.
pub fn id_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(MAX_ID_LEN))
        .pattern(Some(r"^[^\u0000-\u001f\u007f-\u009f]*$"))
}

/// One event as a client sends it (`Event` in the document).
pub struct EventSchema;

impl ToSchema for EventSchema {
    fn name() -> std::borrow::Cow<'static, str> {
        "Event".into()
    }
}

impl PartialSchema for EventSchema {
    fn schema() -> RefOr<Schema> {
        let bounds = EventBounds::DEFAULT;
        let max = bounds.max_amount;
        let amount = OneOfBuilder::new()
            .description(Some(format!(
                "At most EVENT_MAX_AMOUNT (default {max:e}) in absolute value."
            )))
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Number)
                    .minimum(Some(-max))
                    .maximum(Some(max)),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(format!(
                        r"^[+-]?([0-9]{{1,{}}}(\.[0-9]*)?|\.[0-9]+)$",
                        whole_digits(max)
                    )))
                    .description(Some(
                        "A decimal number as a string, as the Go producer sent it. The server \
                         also takes surrounding whitespace and an exponent (\"6.5e2\"), within \
                         the same bound.",
                    )),
            );
        let time = ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(0))
            .maximum(Some(MAX_TIME_MS))
            .description(Some(format!(
                "Unix milliseconds. Must lie in a window around the time of receipt: at most \
                 EVENT_MAX_AGE (default {}) before it and at most EVENT_MAX_AHEAD (default {}) \
                 after it; outside it the event is invalid (400, field `time`). Missing: the \
                 time of receipt, allowed only without `id`.",
                in_words(bounds.max_age),
                in_words(bounds.max_ahead)
            )));
        let id = id_schema().description(Some(format!(
            "Client-chosen id, sent again unchanged on retry so that the event is stored \
             once; generated when missing. {ID_RULE} An event with an id must carry its \
             `time` (else 400 naming `time`), so that a retry is the same event."
        )));
        // JSON Schema keywords utoipa has no field for.
        let id_needs_time: Extensions = [("dependentRequired", json!({"id": ["time"]}))]
            .into_iter()
            .collect();
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .required("amount")
            .property("amount", amount)
            .property("time", time)
            .property("id", id)
            .additional_properties(Some(AdditionalProperties::<Schema>::FreeForm(true)))
            .extensions(Some(id_needs_time))
            .examples([
                json!({"time": 1_700_000_000_000_i64, "amount": 6.5, "id": "order-1"}),
                json!({"amount": "2.25"}),
            ])
            .into()
    }
}

/// A body of the line formats: one JSON event per line.
pub struct EventLines;

impl ToSchema for EventLines {
    fn name() -> std::borrow::Cow<'static, str> {
        "EventLines".into()
    }
}

impl PartialSchema for EventLines {
    fn schema() -> RefOr<Schema> {
        let digits = whole_digits(EventBounds::DEFAULT.max_amount);
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(format!(
                r#"^(\{{"amount":-?(0|[1-9][0-9]{{0,{}}})(\.[0-9]{{1,9}})?\}}\n)+$"#,
                digits.saturating_sub(1)
            )))
            .description(Some(
                "One JSON event per line (any Event, as in application/json); blank lines are \
                 skipped, and at least one line must hold an event. JSON Schema cannot describe \
                 a line of JSON, so the pattern shows only the simplest events, one \
                 `{\"amount\":…}` per line.",
            ))
            .into()
    }
}

/// Whole digits an amount below `max` may always have: the largest `n` with
/// 10ⁿ ≤ `max`, so that any `n`-digit number (with any fraction) is within.
fn whole_digits(max: f64) -> usize {
    let mut digits = 0;
    let mut power = 10.0;
    while power <= max {
        digits += 1;
        power *= 10.0;
    }
    digits
}

/// A default duration as the README states it.
fn in_words(duration: Duration) -> String {
    const DAY: u64 = 86_400;
    const YEAR: u64 = 31_557_600; // 365.25 days
    match duration.as_secs() {
        secs if secs % YEAR == 0 => format!("{} years of 365.25 days", secs / YEAR),
        DAY => "1 day".into(),
        secs if secs % DAY == 0 => format!("{} days", secs / DAY),
        secs => format!("{secs} s"),
    }
}

/// The schema of `ItemError::field`.
pub(crate) fn field_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::String))
        .enum_values(Some(FIELDS))
        .description(Some("The field at fault, when the error is about one"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EventError;

    #[test]
    fn the_bounds_are_the_models() {
        let schema = serde_json::to_value(EventSchema::schema()).unwrap();
        let amount = &schema["properties"]["amount"]["oneOf"];
        assert_eq!(amount[0]["maximum"], EventBounds::DEFAULT.max_amount);
        assert_eq!(
            amount[1]["pattern"],
            r"^[+-]?([0-9]{1,15}(\.[0-9]*)?|\.[0-9]+)$"
        );
        assert_eq!(schema["properties"]["id"]["maxLength"], MAX_ID_LEN);
        assert!(ID_RULE.starts_with(&format!("1 to {MAX_ID_LEN} bytes")));
        assert_eq!(schema["properties"]["time"]["maximum"], MAX_TIME_MS);
        assert_eq!(schema["dependentRequired"], json!({"id": ["time"]}));
        let description = schema["properties"]["time"]["description"]
            .as_str()
            .unwrap();
        assert!(
            description.contains("(default 10 years of 365.25 days)"),
            "{description}"
        );
        assert!(description.contains("(default 1 day)"), "{description}");
        let lines = serde_json::to_value(EventLines::schema()).unwrap();
        assert_eq!(
            lines["pattern"],
            r#"^(\{"amount":-?(0|[1-9][0-9]{0,14})(\.[0-9]{1,9})?\}\n)+$"#
        );
        assert_eq!(
            (whole_digits(1e15), whole_digits(9.9e14), whole_digits(0.5)),
            (15, 14, 0)
        );
    }

    #[test]
    fn every_field_an_error_names_is_listed() {
        let errors = [
            EventError::Missing("amount"),
            EventError::Missing("time"),
            EventError::Missing("id"),
            EventError::AmountNotFinite,
            EventError::TimeRequiredWithId,
            EventError::IdControl,
        ];
        for error in errors {
            let field = error.field().unwrap();
            assert!(FIELDS.contains(&field), "{field}");
        }
    }
}
