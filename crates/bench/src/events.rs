//! The events every baseline writes: built as [`streamproc_event::Event`]s, so
//! each one passes the same validation as a client's and serialises through
//! the services' own code.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use streamproc_event::{Amount, Event, EventId, EventTime};

/// Which of the two sinks an event belongs to. The amounts sit either side
/// of the default watermark (5), as in the scripts' topics, so an event
/// written by a baseline is one its consumer would store.
#[derive(Debug, Clone, Copy)]
pub enum Side {
    /// Above the watermark: consumer-high, TimescaleDB.
    High,
    /// At or below it: consumer-low, InfluxDB.
    Low,
    /// Alternating, like the topic the consume benchmark fills.
    Both,
}

/// `n` events with ids `<run>-<i>`, one per millisecond, the last one now:
/// the shape the benchmark scripts POST, so record sizes match event-api's.
/// In the past, as a backlog's events are by the time a consumer drains
/// them (consumer-low totals late seconds in fewer, larger queries).
pub fn generate(run: &str, n: usize, side: Side) -> anyhow::Result<Vec<Event>> {
    let start = EventTime::now().as_millis() - n as i64;
    (0..n)
        .map(|i| {
            let high = match side {
                Side::High => true,
                Side::Low => false,
                Side::Both => i % 2 == 0,
            };
            // Vary the amount within each side so that floats of several
            // lengths are printed, as with real amounts.
            let cents = (i % 250) as f64 / 100.0;
            let amount = if high { 5.01 + cents } else { 2.5 + cents };
            Ok(Event::new(
                EventId::parse(&format!("{run}-{i}"))?,
                EventTime::from_millis(start + i as i64)?,
                Amount::new(amount)?,
            ))
        })
        .collect::<Result<_, streamproc_event::EventError>>()
        .context("building the benchmark events")
}

/// A prefix that keeps the ids of one run apart from every other run's, so
/// the stores' per-id deduplication never drops a baseline's row.
pub fn run_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("nb{:x}", nanos & 0xffff_ffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamproc_event::{Route, Watermark};

    fn routes(side: Side) -> Vec<Route> {
        generate("t", 500, side)
            .unwrap()
            .iter()
            .map(|e| Watermark::DEFAULT.route(e.amount))
            .collect()
    }

    #[test]
    fn each_side_is_stored_by_its_consumer_and_both_alternate() {
        assert!(routes(Side::High).iter().all(|r| *r == Route::High));
        assert!(routes(Side::Low).iter().all(|r| *r == Route::Low));
        let both = routes(Side::Both);
        assert_eq!(both.iter().filter(|r| **r == Route::High).count(), 250);
        assert_eq!(both[0], Route::High);
        assert_eq!(both[1], Route::Low);
    }

    #[test]
    fn ids_count_up_and_times_are_one_millisecond_apart() {
        let events = generate("run", 3, Side::Both).unwrap();
        assert_eq!(events[2].id.as_str(), "run-2");
        assert_eq!(events[2].time.as_millis() - events[0].time.as_millis(), 2);
    }
}
