//! The wire format of a batch: turns a request body into validated events.
//! Formats are chosen by Content-Type: a JSON array (or one object), or one
//! JSON event per line. Lives beside the event model, not in event-api, so
//! that its fuzz target builds without the service's I/O.

use serde::de::value::MapAccessDeserializer;
use serde::de::{Deserializer as _, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::event::{Admission, Defaults, Event, EventError, EventTime};

/// One invalid event of a batch.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ItemError {
    /// Position of the event in the batch, from 0.
    pub index: usize,
    /// Line of the body, from 1 (line formats only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, nullable = false)]
    pub line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = crate::schema::field_schema)]
    pub field: Option<&'static str>,
    pub message: String,
}

/// Why a body holds no batch to ingest. Each is the client's mistake.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BodyError {
    #[error("unsupported content type {0:?}; send one of: {ACCEPTED_TYPES}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    Malformed(String),
    #[error("the body holds no events")]
    NoEvents,
    #[error("{invalid} of {total} events are invalid; nothing was ingested")]
    InvalidEvents {
        total: usize,
        invalid: usize,
        /// The first invalid events (at most [`MAX_LISTED_ERRORS`]).
        errors: Vec<ItemError>,
    },
    #[error("the body holds more than {limit} events, the most one request may carry; split it")]
    TooManyEvents { limit: usize },
}

impl BodyError {
    /// A stable, machine-readable name for the error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::Malformed(_) => "malformed_body",
            Self::NoEvents => "no_events",
            Self::InvalidEvents { .. } => "invalid_events",
            Self::TooManyEvents { .. } => "too_many_events",
        }
    }
}

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

/// The Content-Type of [`BodyFormat::Json`].
pub const JSON_TYPE: &str = "application/json";
/// The Content-Types of [`BodyFormat::Lines`].
pub const LINE_TYPES: [&str; 3] = ["application/x-ndjson", "text/plain", "application/text"];

impl BodyFormat {
    /// Reads a Content-Type header's raw value; parameters such as
    /// `; charset=utf-8` are allowed.
    pub fn from_content_type(value: Option<&[u8]>) -> Result<Self, BodyError> {
        let Some(value) = value else {
            return Err(BodyError::UnsupportedMediaType("none".into()));
        };
        let raw = std::str::from_utf8(value).unwrap_or_default();
        let unsupported = || BodyError::UnsupportedMediaType(raw.to_owned());
        let mime: mime::Mime = raw.parse().map_err(|_| unsupported())?;
        match mime.essence_str() {
            JSON_TYPE => Ok(Self::Json),
            essence if LINE_TYPES.contains(&essence) => Ok(Self::Lines),
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
pub fn parse(format: BodyFormat, body: &[u8], rules: &Rules) -> Result<Vec<Event>, BodyError> {
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
    stopped: Option<BodyError>,
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

    /// Takes the next item, validated by `validate`; `false` once the body
    /// holds too many.
    fn push(
        &mut self,
        line: Option<usize>,
        validate: impl FnOnce(Defaults, &Admission) -> Result<Event, EventError>,
    ) -> bool {
        if self.seen == self.rules.max_events {
            self.stopped = Some(BodyError::TooManyEvents {
                limit: self.rules.max_events,
            });
            return false;
        }
        let index = self.seen;
        self.seen += 1;
        let defaults = Defaults::Fill {
            received_at: self.rules.received_at,
        };
        match validate(defaults, &self.rules.admission) {
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

    fn finish(self) -> Result<Vec<Event>, BodyError> {
        if let Some(stopped) = self.stopped {
            return Err(stopped);
        }
        if self.seen == 0 {
            return Err(BodyError::NoEvents);
        }
        if self.errors.is_empty() {
            return Ok(self.events);
        }
        Err(BodyError::InvalidEvents {
            total: self.seen,
            invalid: self.seen_errors(),
            errors: self.errors,
        })
    }
}

const NOT_EVENTS: &str = "body must be a JSON array of events or a single event object";

/// Streams a JSON array item by item into `items` (or takes one object),
/// so that no tree of the whole body is ever built.
fn json_items(body: &[u8], items: &mut Items<'_>) -> Result<(), BodyError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let mut item_not_json = false;
    let visitor = JsonItems {
        items,
        item_not_json: &mut item_not_json,
    };
    let parsed = deserializer
        .deserialize_any(visitor)
        .and_then(|()| deserializer.end());
    let not_valid_json = |e| BodyError::Malformed(format!("body is not valid JSON: {e}"));
    match parsed {
        Ok(()) => Ok(()),
        // Parsing stopped on purpose: `finish` reports why.
        Err(_) if items.stopped.is_some() => Ok(()),
        // An array's items are only scanned here (`RawValue`), which lets
        // through what a `Value` refuses (a number such as 1e400, a lone
        // surrogate, nesting past serde_json's limit). The body read as one
        // value names that error where it stands in the body, as the whole
        // body always has been.
        Err(e) if item_not_json => Err(serde_json::from_slice::<Value>(body)
            .err()
            .map_or_else(|| not_valid_json(e), not_valid_json)),
        Err(e) if e.is_data() => Err(BodyError::Malformed(NOT_EVENTS.into())),
        Err(e) => Err(not_valid_json(e)),
    }
}

struct JsonItems<'a, 'r> {
    items: &'a mut Items<'r>,
    /// Set when an array item turned out not to be JSON a `Value` takes.
    item_not_json: &'a mut bool,
}

impl<'de> Visitor<'de> for JsonItems<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON array of events or a single event object")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        // Each item's text, borrowed from the body: checked to be JSON
        // here, validated as an event without a tree of its own.
        while let Some(item) = seq.next_element::<&RawValue>()? {
            let json = item.get().as_bytes();
            let mut not_json = false;
            let validate = |defaults, admission: &Admission| {
                let event = Event::from_json_slice(json, defaults, admission);
                not_json = matches!(event, Err(EventError::Json(_)));
                event
            };
            if !self.items.push(None, validate) {
                return Err(serde::de::Error::custom("too many events"));
            }
            if not_json {
                *self.item_not_json = true;
                return Err(serde::de::Error::custom("an item is not JSON"));
            }
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        let value = Value::deserialize(MapAccessDeserializer::new(map))?;
        self.items.push(None, |defaults, admission: &Admission| {
            Event::from_json(value, defaults, admission)
        });
        Ok(())
    }
}

fn line_items(body: &[u8], items: &mut Items<'_>) -> Result<(), BodyError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| BodyError::Malformed(format!("body is not UTF-8 text: {e}")))?;
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let validate = |defaults, admission: &Admission| {
            Event::from_json_slice(line.as_bytes(), defaults, admission)
        };
        if !items.push(Some(number + 1), validate) {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EventBounds;

    const NOW: i64 = 1_700_000_000_000;

    fn rules(max_events: usize) -> Rules {
        let received_at = EventTime::from_millis(NOW).unwrap();
        Rules {
            received_at,
            admission: EventBounds::DEFAULT.at(received_at),
            max_events,
        }
    }

    fn parse_as(content_type: &str, body: &str) -> Result<Vec<Event>, BodyError> {
        let format = BodyFormat::from_content_type(Some(content_type.as_bytes()))?;
        parse(format, body.as_bytes(), &rules(1_000))
    }

    fn item_errors(result: Result<Vec<Event>, BodyError>) -> Vec<ItemError> {
        match result {
            Err(BodyError::InvalidEvents { errors, .. }) => errors,
            other => panic!("expected invalid events, got {other:?}"),
        }
    }

    #[test]
    fn content_types() {
        let format = |ct: &str| BodyFormat::from_content_type(Some(ct.as_bytes()));
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
        for accepted in LINE_TYPES.iter().chain([&JSON_TYPE]) {
            assert!(ACCEPTED_TYPES.contains(accepted), "{accepted}");
        }
        assert!(matches!(
            format("application/xml"),
            Err(BodyError::UnsupportedMediaType(_))
        ));
        assert!(matches!(
            format("garbage"),
            Err(BodyError::UnsupportedMediaType(_))
        ));
        assert!(matches!(
            BodyFormat::from_content_type(None),
            Err(BodyError::UnsupportedMediaType(_))
        ));
    }

    /// Items that the array's scan lets through but a `serde_json::Value`
    /// refuses: the whole body is malformed, named where it stands in the
    /// body, as when every item was parsed as a `Value`.
    #[test]
    fn an_item_a_value_refuses_makes_the_body_malformed() {
        for (body, message) in [
            (
                r#"[{"amount":1},{"amount":1e400}]"#,
                "body is not valid JSON: number out of range at line 1 column 29",
            ),
            (
                r#"[{"amount":1,"x":1e400}]"#,
                "body is not valid JSON: number out of range at line 1 column 22",
            ),
            (
                r#"[{"amount":1,"x":"\ud800"}]"#,
                "body is not valid JSON: unexpected end of hex escape at line 1 column 25",
            ),
        ] {
            assert_eq!(
                parse_as("application/json", body),
                Err(BodyError::Malformed(message.into())),
                "{body}"
            );
        }
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
            Err(BodyError::Malformed(_))
        ));
        assert!(matches!(
            parse_as("application/json", "\"x\""),
            Err(BodyError::Malformed(_))
        ));
        assert!(matches!(
            parse_as("application/json", "[]"),
            Err(BodyError::NoEvents)
        ));
        assert!(matches!(
            parse_as("text/plain", "\n \n"),
            Err(BodyError::NoEvents)
        ));
        let invalid_utf8 = parse(BodyFormat::Lines, &[0xff, 0xfe], &rules(10));
        assert!(matches!(invalid_utf8, Err(BodyError::Malformed(_))));
        assert!(matches!(
            parse_as("application/json", "[{\"amount\":1}] x"),
            Err(BodyError::Malformed(_))
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
                matches!(too_many, Err(BodyError::TooManyEvents { limit: 10 })),
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
            Err(BodyError::InvalidEvents {
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
