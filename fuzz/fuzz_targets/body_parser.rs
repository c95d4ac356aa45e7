//! event-api's body parser, in every format, on arbitrary bytes: it never
//! panics, never returns more events than `max_events`, never lists more
//! than `MAX_LISTED_ERRORS` errors, and every event it returns survives the
//! trip through Kafka (canonical bytes, decoded with the same bounds).
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamproc_event::body::{self, BodyError, BodyFormat, Rules};
use streamproc_event::{Event, EventBounds, EventTime};

/// 2023-11-14T22:13:20Z: a fixed "now", so that a crash replays.
const NOW: i64 = 1_700_000_000_000;

/// Small limits reach "too many events" often; the large one lets whole
/// bodies through.
const MAX_EVENTS: [usize; 3] = [1, 7, 10_000];

fuzz_target!(|data: &[u8]| {
    let received_at = EventTime::from_millis(NOW).unwrap();
    for format in [BodyFormat::Json, BodyFormat::Lines] {
        for max_events in MAX_EVENTS {
            let rules = Rules {
                received_at,
                admission: EventBounds::DEFAULT.at(received_at),
                max_events,
            };
            check(format, data, &rules);
        }
    }
});

fn check(format: BodyFormat, data: &[u8], rules: &Rules) {
    match body::parse(format, data, rules) {
        Ok(events) => {
            assert!(!events.is_empty(), "{format:?}: Ok without events");
            assert!(
                events.len() <= rules.max_events,
                "{format:?}: {} events with max_events {}",
                events.len(),
                rules.max_events
            );
            for event in events {
                round_trips(&event, rules);
            }
        }
        Err(BodyError::InvalidEvents {
            total,
            invalid,
            errors,
        }) => {
            assert!(!errors.is_empty(), "{format:?}: invalid without errors");
            assert!(
                errors.len() <= body::MAX_LISTED_ERRORS,
                "{format:?}: {} errors listed",
                errors.len()
            );
            assert!(
                errors.len() <= invalid && invalid <= total && total <= rules.max_events,
                "{format:?}: {} listed, {invalid} invalid of {total}, max_events {}",
                errors.len(),
                rules.max_events
            );
            assert!(
                errors.windows(2).all(|w| w[0].index < w[1].index),
                "{format:?}: indexes out of order"
            );
            assert!(errors.iter().all(|e| e.index < total));
        }
        Err(BodyError::TooManyEvents { limit }) => assert_eq!(limit, rules.max_events),
        Err(BodyError::Malformed(_) | BodyError::NoEvents) => {}
        Err(other) => panic!("{format:?}: parse gave an error it never should: {other:?}"),
    }
}

fn round_trips(event: &Event, rules: &Rules) {
    let bytes = event.to_json_bytes();
    match Event::from_json_bytes(&bytes, &rules.admission) {
        Ok(decoded) => assert_eq!(
            &decoded,
            event,
            "record {}",
            String::from_utf8_lossy(&bytes)
        ),
        Err(e) => panic!(
            "accepted event {event:?} does not decode from its record {}: {e}",
            String::from_utf8_lossy(&bytes)
        ),
    }
}
