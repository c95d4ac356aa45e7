//! Decoding a Kafka record, as every consumer does, on arbitrary bytes: it
//! never panics, it answers exactly as validating the whole JSON value does
//! (the same event, or the same error to the word), and an accepted event
//! re-encodes to the same canonical record and decodes back equal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::time::Duration;
use streamproc_event::{
    Admission, Defaults, Event, EventBounds, EventError, EventTime, AMOUNT_LIMIT_CEILING,
};

/// 2023-11-14T22:13:20Z: a fixed "now", so that a crash replays.
const NOW: i64 = 1_700_000_000_000;

fuzz_target!(|data: &[u8]| {
    let now = EventTime::from_millis(NOW).unwrap();
    // The bounds consumers run with, and the widest an operator may set:
    // every representable time, amounts up to the ceiling.
    let widest = EventBounds {
        max_age: Duration::MAX,
        max_ahead: Duration::MAX,
        max_amount: AMOUNT_LIMIT_CEILING,
    };
    for admission in [EventBounds::DEFAULT.at(now), widest.at(now)] {
        check(data, &admission);
    }
});

fn check(data: &[u8], admission: &Admission) {
    let decoded = Event::from_json_bytes(data, admission);
    let whole = serde_json::from_slice(data)
        .map_err(|e| EventError::Json(e.to_string()))
        .and_then(|value| Event::from_json(value, Defaults::Required, admission));
    assert_eq!(decoded, whole, "input {}", String::from_utf8_lossy(data));
    let Ok(event) = decoded else {
        return;
    };
    let bytes = event.to_json_bytes();
    let decoded = Event::from_json_bytes(&bytes, admission).unwrap_or_else(|e| {
        panic!(
            "decoded {event:?}, but its record {} does not decode: {e}",
            String::from_utf8_lossy(&bytes)
        )
    });
    assert_eq!(decoded, event, "record {}", String::from_utf8_lossy(&bytes));
    assert_eq!(
        decoded.to_json_bytes(),
        bytes,
        "canonical bytes are not stable"
    );
}
