//! Turns a request body into validated events. Formats are chosen by
//! Content-Type: a JSON array (or one object), or one JSON event per line.

use axum::http::HeaderValue;
use serde::de::value::MapAccessDeserializer;
use serde::de::{Deserializer as _, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;
use streamproc::event::{Admission, Defaults, Event, EventError, EventTime};

pub use crate::error::{ApiError, ItemError};

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

/// Most item errors one answer lists; the rest are only counted, so that a
/// body of many small mistakes gets a small answer.
pub const MAX_LISTED_ERRORS: usize = 100;

/// What one body is checked against.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// The time given to events sent without one.
    pub received_at: EventTime,
    pub admission: Admission,
    /// Most items (valid or not) in one body; counted while parsing, so a
    /// body of a million tiny items is refused after the limit, not after
    /// it was all parsed.
    pub max_events: usize,
}

/// Parses and validates every event of a body. Either all are valid, or the
/// error lists the invalid ones: a batch is accepted or rejected whole.
pub fn parse(format: BodyFormat, body: &[u8], rules: &Rules) -> Result<Vec<Event>, ApiError> {
    let mut items = Items::new(rules);
    match format {
        BodyFormat::Json => json_items(body, &mut items)?,
        BodyFormat::Lines => line_items(body, &mut items)?,
    }
    items.finish()
}

/// Validates items as the parser finds them, keeping the events, the first
/// errors and a count of the rest.
struct Items<'r> {
    rules: &'r Rules,
    seen: usize,
    events: Vec<Event>,
    errors: Vec<ItemError>,
    omitted: usize,
    /// Why parsing stopped early, when it did.
    stopped: Option<ApiError>,
}

impl<'r> Items<'r> {
    fn new(rules: &'r Rules) -> Self {
        Self {
            rules,
            seen: 0,
            events: Vec::new(),
            errors: Vec::new(),
            omitted: 0,
            stopped: None,
        }
    }

    /// Takes the next item; `false` once the body holds too many.
    fn push(&mut self, line: Option<usize>, value: Result<Value, EventError>) -> bool {
        if self.seen == self.rules.max_events {
            self.stopped = Some(ApiError::TooManyEvents {
                limit: self.rules.max_events,
            });
            return false;
        }
        let index = self.seen;
        self.seen += 1;
        let defaults = Defaults::Fill {
            received_at: self.rules.received_at,
        };
        match value.and_then(|value| Event::from_json(value, defaults, &self.rules.admission)) {
            Ok(event) if self.seen_errors() == 0 => self.events.push(event),
            // Once one item is bad nothing is ingested (the events were
            // dropped at the first error).
            Ok(_) => {}
            Err(error) if self.errors.len() < MAX_LISTED_ERRORS => {
                self.events = Vec::new();
                self.errors.push(ItemError {
                    index,
                    line,
                    field: error.field(),
                    message: error.to_string(),
                });
            }
            Err(_) => self.omitted += 1,
        }
        true
    }

    fn seen_errors(&self) -> usize {
        self.errors.len() + self.omitted
    }

    fn finish(self) -> Result<Vec<Event>, ApiError> {
        if let Some(stopped) = self.stopped {
            return Err(stopped);
        }
        if self.seen == 0 {
            return Err(ApiError::NoEvents);
        }
        if self.errors.is_empty() {
            return Ok(self.events);
        }
        Err(ApiError::InvalidEvents {
            total: self.seen,
            invalid: self.seen_errors(),
            errors: self.errors,
        })
    }
}

const NOT_EVENTS: &str = "body must be a JSON array of events or a single event object";

/// Streams a JSON array item by item into `items` (or takes one object),
/// so that no tree of the whole body is ever built.
fn json_items(body: &[u8], items: &mut Items<'_>) -> Result<(), ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let parsed = deserializer
        .deserialize_any(JsonItems(items))
        .and_then(|()| deserializer.end());
    match parsed {
        Ok(()) => Ok(()),
        // Parsing stopped on purpose: `finish` reports why.
        Err(_) if items.stopped.is_some() => Ok(()),
        Err(e) if e.is_data() => Err(ApiError::MalformedBody(NOT_EVENTS.into())),
        Err(e) => Err(ApiError::MalformedBody(format!(
            "body is not valid JSON: {e}"
        ))),
    }
}

struct JsonItems<'a, 'r>(&'a mut Items<'r>);

impl<'de> Visitor<'de> for JsonItems<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON array of events or a single event object")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(value) = seq.next_element::<Value>()? {
            if !self.0.push(None, Ok(value)) {
                return Err(serde::de::Error::custom("too many events"));
            }
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        let value = Value::deserialize(MapAccessDeserializer::new(map))?;
        self.0.push(None, Ok(value));
        Ok(())
    }
}

fn line_items(body: &[u8], items: &mut Items<'_>) -> Result<(), ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| ApiError::MalformedBody(format!("body is not UTF-8 text: {e}")))?;
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value = serde_json::from_str(line).map_err(|e| EventError::Json(e.to_string()));
        if !items.push(Some(number + 1), value) {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamproc::EventBounds;

    const NOW: i64 = 1_700_000_000_000;

    fn rules(max_events: usize) -> Rules {
        let received_at = EventTime::from_millis(NOW).unwrap();
        Rules {
            received_at,
            admission: EventBounds::DEFAULT.at(received_at),
            max_events,
        }
    }

    fn parse_as(content_type: &str, body: &str) -> Result<Vec<Event>, ApiError> {
        let format =
            BodyFormat::from_content_type(Some(&HeaderValue::from_str(content_type).unwrap()))?;
        parse(format, body.as_bytes(), &rules(1_000))
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
            r#"[{"time":1700000000001,"amount":2},{"time":1700000000003,"amount":"4.5","id":"x"}]"#,
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
        let invalid_utf8 = parse(BodyFormat::Lines, &[0xff, 0xfe], &rules(10));
        assert!(matches!(invalid_utf8, Err(ApiError::MalformedBody(_))));
        assert!(matches!(
            parse_as("application/json", "[{\"amount\":1}] x"),
            Err(ApiError::MalformedBody(_))
        ));
    }

    #[test]
    fn counts_items_while_parsing_and_stops_past_the_limit() {
        for format in [BodyFormat::Json, BodyFormat::Lines] {
            let body = match format {
                BodyFormat::Json => format!("[{}]", ["{}"; 11].join(",")),
                BodyFormat::Lines => "{}\n".repeat(11),
            };
            let too_many = parse(format, body.as_bytes(), &rules(10));
            assert!(
                matches!(too_many, Err(ApiError::TooManyEvents { limit: 10 })),
                "{format:?}: {too_many:?}"
            );
            // Ten bad items are within the limit: their errors are listed.
            let body = match format {
                BodyFormat::Json => format!("[{}]", ["{}"; 10].join(",")),
                BodyFormat::Lines => "{}\n".repeat(10),
            };
            assert_eq!(
                item_errors(parse(format, body.as_bytes(), &rules(10))).len(),
                10
            );
        }
    }

    #[test]
    fn lists_the_first_errors_and_counts_the_rest() {
        let body = "x\n".repeat(MAX_LISTED_ERRORS + 50);
        match parse(BodyFormat::Lines, body.as_bytes(), &rules(1_000)) {
            Err(ApiError::InvalidEvents {
                total,
                invalid,
                errors,
            }) => {
                assert_eq!(
                    (total, invalid),
                    (MAX_LISTED_ERRORS + 50, MAX_LISTED_ERRORS + 50)
                );
                assert_eq!(errors.len(), MAX_LISTED_ERRORS);
                assert_eq!(errors[0].line, Some(1));
            }
            other => panic!("expected invalid events, got {other:?}"),
        }
    }

    #[test]
    fn bounds_apply_to_each_event() {
        let errors = item_errors(parse_as(
            "application/json",
            r#"[{"time":1700000000000,"amount":2e300},{"time":1,"amount":1},{"id":"r","amount":1}]"#,
        ));
        let fields: Vec<_> = errors.iter().map(|e| (e.index, e.field)).collect();
        assert_eq!(
            fields,
            [(0, Some("amount")), (1, Some("time")), (2, Some("time"))]
        );
    }
}
