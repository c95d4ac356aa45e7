//! The event model: what a client may send, and the validated [`Event`] that
//! every later stage relies on.
//!
//! Validation happens once, at the edge (event-api), and again when a consumer
//! decodes a Kafka record, because a topic can be written by anyone. Both go
//! through [`Event::from_json`] with the same [`EventBounds`], so the two can
//! never disagree on what a valid event is.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;

use crate::fields::Fields;

/// Longest client-chosen id, in bytes. Long enough for a UUID or a
/// `producer-run/sequence` pair, short enough to keep keys and indexes small.
pub const MAX_ID_LEN: usize = 128;

/// 2262-04-11T23:47:16.853Z: InfluxDB stores nanoseconds in an i64, and
/// consumer-low adds up to 999 999 ns to a point's time (see
/// `streamproc_store::line`), so this is the last millisecond every store
/// can hold.
pub const MAX_TIME_MS: i64 = (i64::MAX - 999_999) / 1_000_000 - 1;

/// 2⁵³: below it every whole float is exact, so a whole-number `time` sent
/// as a float converts to the integer it spells.
const MAX_EXACT_FLOAT: f64 = 9_007_199_254_740_992.0;

/// The largest `EVENT_MAX_AMOUNT` accepted. Any finite limit keeps sums
/// finite in practice; this one keeps them exact to a few units in 10⁻¹⁶ of
/// the total even over 10¹² events.
pub const AMOUNT_LIMIT_CEILING: f64 = 1e300;

/// What an event may say beyond what the stores can represent. Times far
/// from now are refused because each distinct week becomes a TimescaleDB
/// chunk and an InfluxDB shard: events scattered over centuries would fill
/// both catalogs. Amounts are bounded so that sums per second, per bucket
/// and in totals stay finite (two amounts near `f64::MAX` overflow).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EventBounds {
    /// Oldest event accepted, counted back from now. Long enough to
    /// backfill years of history.
    pub max_age: Duration,
    /// Furthest into the future an event may be (clock skew, time zones).
    pub max_ahead: Duration,
    /// Largest |amount| accepted.
    pub max_amount: f64,
}

impl EventBounds {
    pub const DEFAULT: Self = Self {
        max_age: Duration::from_secs(10 * 36_525 * 864), // 10 years of 365.25 days
        max_ahead: Duration::from_secs(86_400),
        max_amount: 1e15,
    };

    /// These bounds at the instant `now`: what one validation checks.
    pub fn at(&self, now: EventTime) -> Admission {
        let millis = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Admission {
            earliest: now.0.saturating_sub(millis(self.max_age)).max(0),
            latest: now
                .0
                .saturating_add(millis(self.max_ahead))
                .min(MAX_TIME_MS),
            max_amount: self.max_amount,
        }
    }

    /// These bounds now.
    pub fn now(&self) -> Admission {
        self.at(EventTime::now())
    }
}

impl Default for EventBounds {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// [`EventBounds`] fixed at one instant: the accepted time window in unix
/// milliseconds and the amount limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Admission {
    earliest: i64,
    latest: i64,
    max_amount: f64,
}

impl Admission {
    fn check_time(&self, time: EventTime) -> Result<EventTime, EventError> {
        if (self.earliest..=self.latest).contains(&time.0) {
            Ok(time)
        } else {
            Err(EventError::TimeOutsideWindow {
                time: time.0,
                earliest: self.earliest,
                latest: self.latest,
            })
        }
    }

    fn check_amount(&self, amount: Amount) -> Result<Amount, EventError> {
        if amount.0.abs() <= self.max_amount {
            Ok(amount)
        } else {
            Err(EventError::AmountOutOfRange {
                amount: amount.0,
                limit: self.max_amount,
            })
        }
    }
}

/// Identifies one event across retries: a client that resends after a lost
/// response sends the same id, and the stores keep one copy per id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(String);

impl EventId {
    pub fn parse(id: &str) -> Result<Self, EventError> {
        if id.is_empty() || id.len() > MAX_ID_LEN {
            return Err(EventError::IdLength(id.len()));
        }
        if id.chars().any(char::is_control) {
            return Err(EventError::IdControl);
        }
        Ok(Self(id.to_owned()))
    }

    /// A fresh, time-ordered id for an event whose client gave none.
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// When the event happened, in unix milliseconds, within `0..=MAX_TIME_MS`:
/// representable in every store. [`EventBounds`] narrows it further.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventTime(i64);

impl EventTime {
    pub fn from_millis(ms: i64) -> Result<Self, EventError> {
        if (0..=MAX_TIME_MS).contains(&ms) {
            Ok(Self(ms))
        } else {
            Err(EventError::TimeOutOfRange(ms))
        }
    }

    pub fn now() -> Self {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        Self(i64::try_from(ms).unwrap_or(MAX_TIME_MS).min(MAX_TIME_MS))
    }

    pub fn as_millis(self) -> i64 {
        self.0
    }
}

/// The measured value of an event; always finite.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Amount(f64);

impl Amount {
    pub fn new(value: f64) -> Result<Self, EventError> {
        if value.is_finite() {
            Ok(Self(value))
        } else {
            Err(EventError::AmountNotFinite)
        }
    }

    pub fn value(self) -> f64 {
        self.0
    }
}

/// A validated event. Only [`Event::from_json`] and [`Event::new`] build one,
/// so holding an `Event` means every field is representable in every store;
/// one from [`Event::from_json`] is also within the [`EventBounds`].
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: EventId,
    pub time: EventTime,
    pub amount: Amount,
}

/// What fills the optional fields of a client's event. Kafka records carry
/// every field, so decoding one passes [`Defaults::Required`].
#[derive(Debug, Clone, Copy)]
pub enum Defaults {
    /// A missing `time` becomes this receipt time; a missing `id` is
    /// generated. An event with an `id` must carry its `time`: a retry is
    /// recognised by the two together (InfluxDB's point identity includes
    /// the time), and a retried copy would otherwise get a new receipt time.
    Fill { received_at: EventTime },
    /// `time` and `id` must be present (canonical records on the topic).
    Required,
}

/// Why one event is invalid. Each message names the field it is about.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EventError {
    #[error("not valid JSON: {0}")]
    Json(String),
    #[error("an event must be a JSON object, got {0}")]
    NotAnObject(&'static str),
    #[error("missing field `{0}`")]
    Missing(&'static str),
    #[error("`amount` must be a number or a string holding a decimal number, got {0}")]
    AmountType(&'static str),
    #[error("`amount` {0:?} is not a decimal number")]
    AmountNotDecimal(String),
    #[error("`amount` must be a finite number")]
    AmountNotFinite,
    #[error("`amount` {amount:e} is outside ±{limit:e} (EVENT_MAX_AMOUNT)")]
    AmountOutOfRange { amount: f64, limit: f64 },
    #[error("`time` must be an integer count of unix milliseconds, got {0}")]
    TimeType(String),
    #[error("`time` {0} is outside 0..={MAX_TIME_MS} unix milliseconds")]
    TimeOutOfRange(i64),
    #[error(
        "`time` {time} is outside the accepted window {earliest}..={latest} unix milliseconds \
         (EVENT_MAX_AGE back, EVENT_MAX_AHEAD ahead of now)"
    )]
    TimeOutsideWindow {
        time: i64,
        earliest: i64,
        latest: i64,
    },
    #[error("missing field `time`: an event with an `id` must carry its `time`, so that a retry is the same event")]
    TimeRequiredWithId,
    #[error("`id` must be a string, got {0}")]
    IdType(&'static str),
    #[error("`id` must be 1 to {MAX_ID_LEN} bytes long, got {0}")]
    IdLength(usize),
    #[error("`id` must not contain control characters")]
    IdControl,
}

impl EventError {
    /// The field the error is about, when it is about one.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            Self::Json(_) | Self::NotAnObject(_) => None,
            Self::Missing(field) => Some(field),
            Self::AmountType(_)
            | Self::AmountNotDecimal(_)
            | Self::AmountNotFinite
            | Self::AmountOutOfRange { .. } => Some("amount"),
            Self::TimeType(_)
            | Self::TimeOutOfRange(_)
            | Self::TimeOutsideWindow { .. }
            | Self::TimeRequiredWithId => Some("time"),
            Self::IdType(_) | Self::IdLength(_) | Self::IdControl => Some("id"),
        }
    }
}

impl Event {
    pub fn new(id: EventId, time: EventTime, amount: Amount) -> Self {
        Self { id, time, amount }
    }

    /// Validates one JSON value as an event within `bounds`. Unknown fields
    /// are ignored, so clients may send more than StreamProc stores.
    pub fn from_json(
        value: Value,
        defaults: Defaults,
        bounds: &Admission,
    ) -> Result<Self, EventError> {
        let Value::Object(mut fields) = value else {
            return Err(EventError::NotAnObject(json_type(&value)));
        };
        Self::from_fields(
            Fields {
                id: fields.remove("id"),
                time: fields.remove("time"),
                amount: fields.remove("amount"),
            },
            defaults,
            bounds,
        )
    }

    /// Validates one event's JSON text, as [`Event::from_json`] its value
    /// (the same answer and the same errors, to the word), without building
    /// a map of its keys when it is a plain object.
    pub fn from_json_slice(
        json: &[u8],
        defaults: Defaults,
        bounds: &Admission,
    ) -> Result<Self, EventError> {
        match Fields::read(json) {
            Some(fields) => Self::from_fields(fields, defaults, bounds),
            None => {
                let value =
                    serde_json::from_slice(json).map_err(|e| EventError::Json(e.to_string()))?;
                Self::from_json(value, defaults, bounds)
            }
        }
    }

    fn from_fields(
        fields: Fields,
        defaults: Defaults,
        bounds: &Admission,
    ) -> Result<Self, EventError> {
        let amount = match fields.amount {
            Some(value) => bounds.check_amount(parse_amount(&value)?)?,
            None => return Err(EventError::Missing("amount")),
        };
        let time = match (fields.time, defaults) {
            (Some(value), _) => bounds.check_time(parse_time(&value)?)?,
            (None, Defaults::Fill { .. }) if fields.id.is_some() => {
                return Err(EventError::TimeRequiredWithId)
            }
            (None, Defaults::Fill { received_at }) => received_at,
            (None, Defaults::Required) => return Err(EventError::Missing("time")),
        };
        let id = match (fields.id, defaults) {
            (Some(Value::String(id)), _) => EventId::parse(&id)?,
            (Some(other), _) => return Err(EventError::IdType(json_type(&other))),
            (None, Defaults::Fill { .. }) => EventId::generate(),
            (None, Defaults::Required) => return Err(EventError::Missing("id")),
        };
        Ok(Self { id, time, amount })
    }

    /// Decodes a canonical Kafka record written by [`Event::to_json_bytes`].
    pub fn from_json_bytes(bytes: &[u8], bounds: &Admission) -> Result<Self, EventError> {
        Self::from_json_slice(bytes, Defaults::Required, bounds)
    }

    /// The canonical record: `{"id":…,"time":ms,"amount":number}`.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Canonical<'a> {
            id: &'a str,
            time: i64,
            amount: f64,
        }
        let canonical = Canonical {
            id: self.id.as_str(),
            time: self.time.as_millis(),
            amount: self.amount.value(),
        };
        serde_json::to_vec(&canonical)
            .expect("a struct of a str, an i64 and a finite f64 always serializes")
    }
}

pub(crate) fn parse_amount(value: &Value) -> Result<Amount, EventError> {
    let number = match value {
        Value::Number(n) => n.as_f64().ok_or(EventError::AmountNotFinite)?,
        // The Go producer sent amounts as decimal strings: keep accepting them.
        Value::String(s) => {
            let trimmed = s.trim();
            if !looks_decimal(trimmed) {
                return Err(EventError::AmountNotDecimal(s.clone()));
            }
            trimmed
                .parse::<f64>()
                .map_err(|_| EventError::AmountNotDecimal(s.clone()))?
        }
        other => return Err(EventError::AmountType(json_type(other))),
    };
    Amount::new(number)
}

/// Rust's float parser also takes "inf", "NaN" and "infinity"; a decimal
/// string from a client must be digits with an optional sign, point and
/// exponent, nothing else.
fn looks_decimal(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | '.' | 'e' | 'E'))
        && s.chars().any(|c| c.is_ascii_digit())
}

fn parse_time(value: &Value) -> Result<EventTime, EventError> {
    match value {
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(ms), _, _) => EventTime::from_millis(ms),
            (None, Some(_), _) => Err(EventError::TimeOutOfRange(i64::MAX)),
            // JSON has one number type: `1700000000000.0` is the same
            // integer to most clients (and to JSON Schema), so take it.
            (None, None, Some(ms)) if ms.fract() == 0.0 && ms.abs() < MAX_EXACT_FLOAT => {
                EventTime::from_millis(ms as i64)
            }
            (None, None, _) => Err(EventError::TimeType(n.to_string())),
        },
        other => Err(EventError::TimeType(json_type(other).to_owned())),
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const RECEIVED: Defaults = Defaults::Fill {
        received_at: EventTime(1_000),
    };

    /// Everything representable, so that the tests below check the parsing.
    fn anything() -> Admission {
        EventBounds {
            max_age: Duration::MAX,
            max_ahead: Duration::MAX,
            max_amount: AMOUNT_LIMIT_CEILING,
        }
        .at(EventTime(1_000))
    }

    fn client(value: Value) -> Result<Event, EventError> {
        Event::from_json(value, RECEIVED, &anything())
    }

    /// Reading the fields from the text answers as validating the whole
    /// value does: the same event (its id aside when one was generated) or
    /// the same error. The fuzz target `event_decode` checks it on
    /// arbitrary bytes.
    #[test]
    fn the_text_and_the_whole_value_give_the_same_answer() {
        let inputs = [
            r#"{"id":"a","time":1000,"amount":2.5}"#,
            r#"{"time":1000,"amount":"4.5","extra":{"nested":[1,2]}}"#,
            r#"{"amount":1,"amount":2}"#,
            r#"{"amount":1,"x":1,"x":2}"#,
            r#"{"id":"\u0001b","timmount":1e400}"#,
            r#"{"amount":1,"other":"\ud800"}"#,
            r#"{"id":null,"amount":1}"#,
            r#"{"id":null,"time":5,"amount":1}"#,
            r#"{"time":null,"amount":1}"#,
            r#"{"amount":null}"#,
            r#"{"amount":"inf"}"#,
            r#"{"amount":3,"time":1e3}"#,
            r#"{"time":18446744073709551615,"amount":1}"#,
            r#"{"time":1.5,"amount":1}"#,
            r#"{"amount":1e400}"#,
            r#"{"id":7,"time":1,"amount":1}"#,
            r#"{}"#,
            r#"[1,2,3]"#,
            r#""text""#,
            "7",
            r#"{"amount":1} trailing"#,
            r#"{"amount":"#,
            "",
        ];
        for input in inputs {
            for defaults in [RECEIVED, Defaults::Required] {
                let answer = |result: Result<Event, EventError>| {
                    result.map(|event| {
                        let id = input.contains("\"id\":\"").then(|| event.id.clone());
                        (id, event.time, event.amount)
                    })
                };
                let text = answer(Event::from_json_slice(
                    input.as_bytes(),
                    defaults,
                    &anything(),
                ));
                let whole = answer(
                    serde_json::from_str(input)
                        .map_err(|e| EventError::Json(e.to_string()))
                        .and_then(|value| Event::from_json(value, defaults, &anything())),
                );
                assert_eq!(text, whole, "{input}");
            }
        }
    }

    #[test]
    fn the_default_bounds_refuse_times_far_from_now_and_huge_amounts() {
        const DAY: i64 = 86_400_000;
        let now = EventTime(1_700_000_000_000);
        let bounds = EventBounds::DEFAULT.at(now);
        let at = |time: i64, amount: f64| {
            Event::from_json(json!({"time": time, "amount": amount}), RECEIVED, &bounds)
        };
        assert!(
            at(now.0 - 3_650 * DAY, 1.0).is_ok(),
            "ten years of backfill"
        );
        assert!(at(now.0 + DAY, 1.0).is_ok());
        for time in [now.0 - 3_653 * DAY, now.0 + DAY + 1, 0, MAX_TIME_MS] {
            let err = at(time, 1.0).unwrap_err();
            assert!(matches!(err, EventError::TimeOutsideWindow { .. }), "{err}");
            assert_eq!(err.field(), Some("time"));
        }
        assert!(at(now.0, -1e15).is_ok());
        for amount in [1e15 * 1.000_001, -1.7e308, f64::MAX] {
            let err = at(now.0, amount).unwrap_err();
            assert!(matches!(err, EventError::AmountOutOfRange { .. }), "{err}");
            assert_eq!(err.field(), Some("amount"));
        }
    }

    #[test]
    fn an_id_needs_its_time_so_that_a_retry_is_the_same_event() {
        let err = client(json!({"id": "retried", "amount": 1})).unwrap_err();
        assert_eq!(err, EventError::TimeRequiredWithId);
        assert_eq!(err.field(), Some("time"));
    }

    #[test]
    fn the_latest_time_fits_influxdb_nanoseconds_with_the_point_offset() {
        let ns = i128::from(MAX_TIME_MS) * 1_000_000 + 999_999;
        assert!(ns < i128::from(i64::MAX));
        let bounds = EventBounds {
            max_age: Duration::ZERO,
            max_ahead: Duration::MAX,
            max_amount: 1.0,
        };
        assert_eq!(bounds.at(EventTime(MAX_TIME_MS)).latest, MAX_TIME_MS);
        assert_eq!(bounds.at(EventTime(0)).earliest, 0);
    }

    #[test]
    fn accepts_number_and_decimal_string_amounts() {
        let a = client(json!({"time": 5, "amount": 6.5, "id": "a"})).unwrap();
        let b = client(json!({"time": 5, "amount": "6.046602879796196", "id": "b"})).unwrap();
        assert_eq!(a.amount.value(), 6.5);
        assert_eq!(b.amount.value(), 6.046602879796196);
        assert_eq!(a.time.as_millis(), 5);
    }

    #[test]
    fn fills_missing_time_and_id() {
        let a = client(json!({"amount": 1})).unwrap();
        let b = client(json!({"amount": 1})).unwrap();
        assert_eq!(a.time, EventTime(1_000));
        assert_ne!(a.id, b.id, "generated ids are unique");
    }

    #[test]
    fn canonical_records_require_every_field() {
        let missing_id = Event::from_json(
            json!({"time": 1, "amount": 1}),
            Defaults::Required,
            &anything(),
        );
        assert_eq!(missing_id, Err(EventError::Missing("id")));
        let missing_time = Event::from_json(
            json!({"id": "x", "amount": 1}),
            Defaults::Required,
            &anything(),
        );
        assert_eq!(missing_time, Err(EventError::Missing("time")));
    }

    #[test]
    fn ignores_unknown_fields() {
        assert!(client(json!({"amount": 1, "note": "hi"})).is_ok());
    }

    #[test]
    fn rejects_each_bad_amount_with_a_named_reason() {
        let cases = [
            (json!({}), EventError::Missing("amount")),
            (json!({"amount": null}), EventError::AmountType("null")),
            (json!({"amount": true}), EventError::AmountType("a boolean")),
            (json!({"amount": [1]}), EventError::AmountType("an array")),
            (
                json!({"amount": "abc"}),
                EventError::AmountNotDecimal("abc".into()),
            ),
            (
                json!({"amount": ""}),
                EventError::AmountNotDecimal(String::new()),
            ),
            (
                json!({"amount": "NaN"}),
                EventError::AmountNotDecimal("NaN".into()),
            ),
            (
                json!({"amount": "inf"}),
                EventError::AmountNotDecimal("inf".into()),
            ),
            (json!({"amount": "1e400"}), EventError::AmountNotFinite),
        ];
        for (input, expected) in cases {
            let err = client(input.clone()).unwrap_err();
            assert_eq!(err, expected, "input {input}");
            assert_eq!(err.field(), Some("amount"));
        }
    }

    #[test]
    fn rejects_bad_times() {
        let cases = [
            (
                json!({"amount": 1, "time": "1"}),
                EventError::TimeType("a string".into()),
            ),
            (
                json!({"amount": 1, "time": 1.5}),
                EventError::TimeType("1.5".into()),
            ),
            (
                json!({"amount": 1, "time": -1.0}),
                EventError::TimeOutOfRange(-1),
            ),
            (
                json!({"amount": 1, "time": 1e300}),
                EventError::TimeType("1e+300".into()),
            ),
            (
                json!({"amount": 1, "time": -1}),
                EventError::TimeOutOfRange(-1),
            ),
            (
                json!({"amount": 1, "time": MAX_TIME_MS + 1}),
                EventError::TimeOutOfRange(MAX_TIME_MS + 1),
            ),
            (
                json!({"amount": 1, "time": u64::MAX}),
                EventError::TimeOutOfRange(i64::MAX),
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(
                client(input.clone()).unwrap_err(),
                expected,
                "input {input}"
            );
        }
        assert!(client(json!({"amount": 1, "time": MAX_TIME_MS})).is_ok());
        let whole = client(json!({"amount": 1, "time": 962.0})).unwrap();
        assert_eq!(whole.time.as_millis(), 962);
    }

    #[test]
    fn rejects_bad_ids() {
        let long = "x".repeat(MAX_ID_LEN + 1);
        let cases = [
            (
                json!({"amount": 1, "time": 1, "id": 7}),
                EventError::IdType("a number"),
            ),
            (
                json!({"amount": 1, "time": 1, "id": ""}),
                EventError::IdLength(0),
            ),
            (
                json!({"amount": 1, "time": 1, "id": long}),
                EventError::IdLength(MAX_ID_LEN + 1),
            ),
            (
                json!({"amount": 1, "time": 1, "id": "a\nb"}),
                EventError::IdControl,
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(
                client(input.clone()).unwrap_err(),
                expected,
                "input {input}"
            );
        }
        assert!(client(json!({"amount": 1, "time": 1, "id": "x".repeat(MAX_ID_LEN)})).is_ok());
    }

    #[test]
    fn rejects_non_objects() {
        assert_eq!(
            client(json!(5)).unwrap_err(),
            EventError::NotAnObject("a number")
        );
        assert_eq!(
            client(json!([])).unwrap_err(),
            EventError::NotAnObject("an array")
        );
    }

    #[test]
    fn canonical_bytes_round_trip() {
        let event = client(json!({"time": 42, "amount": "5.000000000000001", "id": "r"})).unwrap();
        let bytes = event.to_json_bytes();
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            r#"{"id":"r","time":42,"amount":5.000000000000001}"#
        );
        assert_eq!(Event::from_json_bytes(&bytes, &anything()).unwrap(), event);
    }

    /// Found by the `event_decode` fuzz target: serde_json's default float
    /// parser may be one unit in the last place off, so an amount written
    /// as its shortest decimal came back as a neighbouring number and a
    /// consumer stored something other than what event-api accepted.
    #[test]
    fn every_amount_decodes_to_the_same_number_it_was_encoded_from() {
        let within_default_bounds = EventBounds::DEFAULT.at(EventTime(1_700_000_000_000));
        for (amount, bounds) in [
            (5e32, anything()),
            (9.999999999999999e299, anything()),
            (1.2345678901234567e-30, within_default_bounds),
            (7e-300, within_default_bounds),
            // About one amount in seven near 1 was off.
            (1.0000000066613641, within_default_bounds),
            (6.046602879796196, within_default_bounds),
        ] {
            let event = Event::new(
                EventId::parse("f").unwrap(),
                EventTime(1_700_000_000_000),
                Amount::new(amount).unwrap(),
            );
            let bytes = event.to_json_bytes();
            let decoded = Event::from_json_bytes(&bytes, &bounds).unwrap();
            assert_eq!(
                decoded.amount.value().to_bits(),
                amount.to_bits(),
                "{}",
                String::from_utf8_lossy(&bytes)
            );
            // A client's number in a body is read by the same parser.
            let sent: Value = serde_json::from_str(&format!("{amount:e}")).unwrap();
            assert_eq!(sent.as_f64().map(f64::to_bits), Some(amount.to_bits()));
        }
    }

    #[test]
    fn decoding_garbage_names_json() {
        assert!(matches!(
            Event::from_json_bytes(b"not json", &anything()),
            Err(EventError::Json(_))
        ));
    }
}
