//! The recent probes, reduced to what rates and lag need: counters to take
//! differences of, and each partition's end offset over time, which tells
//! when the oldest event a group has not consumed arrived (its lag in
//! seconds) without reading any record.

use std::collections::VecDeque;

use streamproc_kafka::offsets::GroupPosition;

/// One probe, as history keeps it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Point {
    pub time_ms: i64,
    /// `(partition, end offset)` of the events topic; empty when unknown.
    pub ends: Vec<(i32, i64)>,
    /// Records ever written to the events topic (sum of end offsets).
    pub records: Option<f64>,
    pub dead_lettered: Option<f64>,
    /// Sum of each group's positions, in the order of the groups.
    pub positions: Vec<Option<f64>>,
    pub accepted: Option<f64>,
    pub rejected: Option<f64>,
    pub shed: Option<f64>,
}

pub struct History {
    points: VecDeque<Point>,
    keep_ms: i64,
    max_points: usize,
}

impl History {
    /// Keeps `keep_ms` of points, and never more than `max_points`.
    pub fn new(keep_ms: i64, max_points: usize) -> Self {
        Self {
            points: VecDeque::new(),
            keep_ms,
            max_points: max_points.max(2),
        }
    }

    pub fn push(&mut self, point: Point) {
        let oldest = point.time_ms - self.keep_ms;
        self.points.push_back(point);
        while self.points.len() > self.max_points
            || self.points.front().is_some_and(|p| p.time_ms < oldest)
        {
            self.points.pop_front();
        }
    }

    /// Per second, the growth of `value` from the oldest point within
    /// `window_ms` of the newest to the newest. `None` without two points
    /// that have it, or when it went backwards (a counter reset, or
    /// another replica answered).
    pub fn rate(&self, window_ms: i64, value: impl Fn(&Point) -> Option<f64>) -> Option<f64> {
        let newest = self.points.back()?;
        let now = value(newest)?;
        let (time, then) = self
            .points
            .iter()
            .filter(|p| p.time_ms >= newest.time_ms - window_ms && p.time_ms < newest.time_ms)
            .find_map(|p| Some((p.time_ms, value(p)?)))?;
        if now < then {
            return None;
        }
        Some((now - then) * 1000.0 / (newest.time_ms - time) as f64)
    }

    /// Seconds since the oldest record after `positions` arrived: the first
    /// point where a partition's end had passed the group's position. A
    /// lower bound when history does not reach back to it.
    pub fn lag_seconds(&self, now_ms: i64, positions: &[GroupPosition]) -> f64 {
        let mut oldest_arrival = now_ms;
        for position in positions.iter().filter(|p| p.lag > 0) {
            let arrival = self
                .points
                .iter()
                .find(|point| {
                    point.ends.iter().any(|&(partition, end)| {
                        partition == position.partition && end > position.position
                    })
                })
                .map_or(now_ms, |point| point.time_ms);
            oldest_arrival = oldest_arrival.min(arrival);
        }
        (now_ms - oldest_arrival).max(0) as f64 / 1000.0
    }

    /// How long the value of `value` has stayed what it is in the newest
    /// point (the group committed nothing); 0 when unknown.
    pub fn unchanged_ms(&self, value: impl Fn(&Point) -> Option<f64>) -> i64 {
        let Some(newest) = self.points.back() else {
            return 0;
        };
        let Some(now) = value(newest) else {
            return 0;
        };
        let mut since = newest.time_ms;
        for point in self.points.iter().rev().skip(1) {
            if value(point) != Some(now) {
                break;
            }
            since = point.time_ms;
        }
        newest.time_ms - since
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(time_ms: i64, end: i64, records: f64) -> Point {
        Point {
            time_ms,
            ends: vec![(0, end)],
            records: Some(records),
            positions: vec![Some(records)],
            ..Point::default()
        }
    }

    #[test]
    fn rates_are_over_the_window_and_none_after_a_reset() {
        let mut history = History::new(60_000, 100);
        assert_eq!(history.rate(10_000, |p| p.records), None);
        for (i, t) in (0..=20_000).step_by(1000).enumerate() {
            history.push(point(t, 0, i as f64 * 50.0));
        }
        // 10 s back from 20 s: 500 records in 10 s.
        assert_eq!(history.rate(10_000, |p| p.records), Some(50.0));
        history.push(point(21_000, 0, 3.0));
        assert_eq!(history.rate(10_000, |p| p.records), None);
    }

    #[test]
    fn lag_in_seconds_is_since_the_first_unconsumed_record_arrived() {
        let mut history = History::new(60_000, 100);
        // The end moves past offset 10 between 3 s and 4 s.
        for (t, end) in [(1000, 8), (2000, 10), (3000, 10), (4000, 15), (5000, 30)] {
            history.push(point(t, end, 0.0));
        }
        let at = |position: i64| GroupPosition {
            partition: 0,
            committed: Some(position),
            position,
            lag: 30 - position,
        };
        assert_eq!(history.lag_seconds(9000, &[at(10)]), 5.0);
        assert_eq!(history.lag_seconds(9000, &[at(30)]), 0.0);
        // Older than history: as old as history, at least.
        assert_eq!(history.lag_seconds(9000, &[at(5)]), 8.0);
        // Another partition that history has no end for: arrived now.
        let other = GroupPosition {
            partition: 7,
            ..at(0)
        };
        assert_eq!(history.lag_seconds(9000, &[other]), 0.0);
    }

    #[test]
    fn old_points_are_dropped() {
        let mut history = History::new(5_000, 3);
        for t in (0..10_000).step_by(1000) {
            history.push(point(t, 0, t as f64));
        }
        assert_eq!(history.points.len(), 3);
        assert_eq!(history.unchanged_ms(|p| p.records), 0);
        history.push(point(10_000, 0, 9000.0));
        history.push(point(11_000, 0, 9000.0));
        assert_eq!(history.unchanged_ms(|p| p.records), 2000);
    }
}
