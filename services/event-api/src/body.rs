//! Turns a request body into validated events. Formats are chosen by
//! Content-Type: a JSON array (or one object), or one JSON event per line.

use axum::http::HeaderValue;
use serde_json::Value;
use streamproc::event::{Defaults, Event, EventTime};

use crate::error::{ApiError, ItemError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// `application/json`: an array of events, or a single event object.
    Json,
    /// `application/text` (the Go version's name), `text/plain`,
    /// `application/x-ndjson`: one JSON event per line.
    Lines,
}

pub const ACCEPTED_TYPES: &str =
    "application/json, application/text, text/plain, application/x-ndjson";

impl BodyFormat {
    /// Content-Type parameters such as `; charset=utf-8` are allowed.
    pub fn from_content_type(value: Option<&HeaderValue>) -> Result<Self, ApiError> {
        let Some(value) = value else {
            return Err(ApiError::UnsupportedMediaType("none".into()));
        };
        let raw = value.to_str().unwrap_or_default();
        let unsupported = || ApiError::UnsupportedMediaType(raw.to_owned());
        let mime: mime::Mime = raw.parse().map_err(|_| unsupported())?;
        match mime.essence_str() {
            "application/json" => Ok(Self::Json),
            "application/text" | "text/plain" | "application/x-ndjson" => Ok(Self::Lines),
            _ => Err(unsupported()),
        }
    }
}

/// Parses and validates every event of a body. Either all are valid, or the
/// error lists each invalid one: a batch is accepted or rejected whole.
pub fn parse(
    format: BodyFormat,
    body: &[u8],
    received_at: EventTime,
) -> Result<Vec<Event>, ApiError> {
    let defaults = Defaults::Fill { received_at };
    let items = match format {
        BodyFormat::Json => json_items(body)?,
        BodyFormat::Lines => line_items(body)?,
    };
    if items.is_empty() {
        return Err(ApiError::NoEvents);
    }
    let mut events = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        let result = item
            .value
            .and_then(|value| Event::from_json(value, defaults));
        match result {
            Ok(event) => events.push(event),
            Err(error) => errors.push(ItemError {
                index,
                line: item.line,
                field: error.field(),
                message: error.to_string(),
            }),
        }
    }
    if errors.is_empty() {
        Ok(events)
    } else {
        Err(ApiError::InvalidEvents {
            total: events.len() + errors.len(),
            errors,
        })
    }
}

/// One would-be event and where it stood in the body.
struct Item {
    line: Option<usize>,
    value: Result<Value, streamproc::event::EventError>,
}

fn json_items(body: &[u8]) -> Result<Vec<Item>, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::MalformedBody(format!("body is not valid JSON: {e}")))?;
    let values = match value {
        Value::Array(values) => values,
        object @ Value::Object(_) => vec![object],
        _ => {
            return Err(ApiError::MalformedBody(
                "body must be a JSON array of events or a single event object".into(),
            ))
        }
    };
    Ok(values
        .into_iter()
        .map(|value| Item {
            line: None,
            value: Ok(value),
        })
        .collect())
}

fn line_items(body: &[u8]) -> Result<Vec<Item>, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| ApiError::MalformedBody(format!("body is not UTF-8 text: {e}")))?;
    Ok(text
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(number, line)| Item {
            line: Some(number + 1),
            value: serde_json::from_str(line)
                .map_err(|e| streamproc::event::EventError::Json(e.to_string())),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    fn parse_as(content_type: &str, body: &str) -> Result<Vec<Event>, ApiError> {
        let format =
            BodyFormat::from_content_type(Some(&HeaderValue::from_str(content_type).unwrap()))?;
        parse(
            format,
            body.as_bytes(),
            EventTime::from_millis(NOW).unwrap(),
        )
    }

    fn item_errors(result: Result<Vec<Event>, ApiError>) -> Vec<ItemError> {
        match result {
            Err(ApiError::InvalidEvents { errors, .. }) => errors,
            other => panic!("expected invalid events, got {other:?}"),
        }
    }

    #[test]
    fn content_types() {
        let format =
            |ct: &str| BodyFormat::from_content_type(Some(&HeaderValue::from_str(ct).unwrap()));
        assert_eq!(format("application/json").unwrap(), BodyFormat::Json);
        assert_eq!(
            format("application/json; charset=utf-8").unwrap(),
            BodyFormat::Json
        );
        assert_eq!(format("Application/JSON").unwrap(), BodyFormat::Json);
        assert_eq!(format("application/text").unwrap(), BodyFormat::Lines);
        assert_eq!(
            format("text/plain;charset=UTF-8").unwrap(),
            BodyFormat::Lines
        );
        assert_eq!(format("application/x-ndjson").unwrap(), BodyFormat::Lines);
        assert!(matches!(
            format("application/xml"),
            Err(ApiError::UnsupportedMediaType(_))
        ));
        assert!(matches!(
            format("garbage"),
            Err(ApiError::UnsupportedMediaType(_))
        ));
        assert!(matches!(
            BodyFormat::from_content_type(None),
            Err(ApiError::UnsupportedMediaType(_))
        ));
    }

    #[test]
    fn json_array_single_object_and_lines() {
        let events = parse_as(
            "application/json",
            r#"[{"time":1,"amount":2},{"time":3,"amount":"4.5","id":"x"}]"#,
        )
        .unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].id.as_str(), "x");
        assert_eq!(events[1].amount.value(), 4.5);
        let one = parse_as("application/json", r#"{"amount":2}"#).unwrap();
        assert_eq!(one[0].time.as_millis(), NOW);
        let lines = parse_as("application/text", "{\"amount\":1}\n\n{\"amount\":2}\r\n").unwrap();
        assert_eq!(lines.len(), 2);
    }

    #[test]
    fn names_every_bad_item_by_index_and_field() {
        let errors = item_errors(parse_as(
            "application/json",
            r#"[{"amount":1},{"time":1},{"amount":"abc"},5]"#,
        ));
        let summary: Vec<_> = errors.iter().map(|e| (e.index, e.field)).collect();
        assert_eq!(
            summary,
            [(1, Some("amount")), (2, Some("amount")), (3, None)]
        );
        assert!(errors[0].message.contains("missing field `amount`"));
    }

    #[test]
    fn names_bad_lines_by_line_number() {
        let errors = item_errors(parse_as(
            "text/plain",
            "{\"amount\":1}\n\nnot json\n{\"amount\":null}",
        ));
        let summary: Vec<_> = errors.iter().map(|e| (e.index, e.line)).collect();
        assert_eq!(summary, [(1, Some(3)), (2, Some(4))]);
    }

    #[test]
    fn malformed_and_empty_bodies() {
        assert!(matches!(
            parse_as("application/json", "[{"),
            Err(ApiError::MalformedBody(_))
        ));
        assert!(matches!(
            parse_as("application/json", "\"x\""),
            Err(ApiError::MalformedBody(_))
        ));
        assert!(matches!(
            parse_as("application/json", "[]"),
            Err(ApiError::NoEvents)
        ));
        assert!(matches!(
            parse_as("text/plain", "\n \n"),
            Err(ApiError::NoEvents)
        ));
        let invalid_utf8 = parse(
            BodyFormat::Lines,
            &[0xff, 0xfe],
            EventTime::from_millis(0).unwrap(),
        );
        assert!(matches!(invalid_utf8, Err(ApiError::MalformedBody(_))));
    }
}
