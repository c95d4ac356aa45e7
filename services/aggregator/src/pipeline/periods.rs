//! The periods when a stage was degraded or down, for the chart to mark:
//! one opens when a stage leaves its status, and closes when the stage
//! changes status again. Kept for the history's length, and at most
//! `MAX_PERIODS`, so a flapping stage cannot grow the answer without bound.
//!
//! A consumer that turns from ok to lagging has been falling behind since
//! its oldest waiting record arrived, before the threshold was crossed: its
//! period starts then (`lag_seconds` ago), so that the chart marks where the
//! line dropped, not where the alarm went off.

use std::collections::{HashMap, VecDeque};

use super::snapshot::{Period, Stage, Status};

const MAX_PERIODS: usize = 200;

pub struct Periods {
    open: HashMap<&'static str, Period>,
    /// When each stage's last period ended: a new one never starts before.
    last_end: HashMap<&'static str, i64>,
    closed: VecDeque<Period>,
    keep_ms: i64,
}

impl Periods {
    pub fn new(keep_ms: i64) -> Self {
        Self {
            open: HashMap::new(),
            last_end: HashMap::new(),
            closed: VecDeque::new(),
            keep_ms,
        }
    }

    pub fn update(&mut self, now_ms: i64, stages: &[Stage]) {
        for stage in stages {
            let same = self
                .open
                .get(stage.name)
                .is_some_and(|period| period.status == stage.status);
            if same {
                if let (Some(period), Some(reason)) = (self.open.get_mut(stage.name), &stage.reason)
                {
                    period.reason.clone_from(reason);
                }
                continue;
            }
            let was_ok = match self.open.remove(stage.name) {
                Some(mut period) => {
                    period.to = Some(now_ms);
                    self.last_end.insert(stage.name, now_ms);
                    self.closed.push_back(period);
                    false
                }
                None => true,
            };
            if stage.status != Status::Ok {
                let behind_since = match stage.lag_seconds {
                    Some(seconds) if was_ok => now_ms - (seconds * 1000.0) as i64,
                    _ => now_ms,
                };
                let from = behind_since.max(self.last_end.get(stage.name).copied().unwrap_or(0));
                self.open.insert(
                    stage.name,
                    Period {
                        stage: stage.name,
                        status: stage.status,
                        reason: stage.reason.clone().unwrap_or_default(),
                        from,
                        to: None,
                    },
                );
            }
        }
        let oldest = now_ms - self.keep_ms;
        while self.closed.len() > MAX_PERIODS
            || self
                .closed
                .front()
                .is_some_and(|p| p.to.is_some_and(|to| to < oldest))
        {
            self.closed.pop_front();
        }
    }

    /// Closed periods, oldest first, then the open ones in pipeline order.
    pub fn list(&self, order: &[&str]) -> Vec<Period> {
        let mut periods: Vec<Period> = self.closed.iter().cloned().collect();
        for name in order {
            if let Some(period) = self.open.get(name) {
                periods.push(period.clone());
            }
        }
        periods
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::snapshot::{Figures, STAGES};

    fn stage(status: Status, reason: &str) -> Stage {
        Stage {
            name: "consumer-high",
            status,
            reason: (status != Status::Ok).then(|| reason.to_owned()),
            events_per_second: None,
            lag_events: None,
            lag_seconds: None,
            figures: Figures::Store {
                latency_ms: None,
                stored_per_second: None,
            },
        }
    }

    #[test]
    fn a_period_per_status_change_with_its_latest_reason() {
        let mut periods = Periods::new(60_000);
        periods.update(0, &[stage(Status::Ok, "")]);
        periods.update(1000, &[stage(Status::Degraded, "10 events behind, 10 s")]);
        periods.update(2000, &[stage(Status::Degraded, "20 events behind, 11 s")]);
        periods.update(3000, &[stage(Status::Down, "stalled")]);
        periods.update(4000, &[stage(Status::Ok, "")]);
        let list = periods.list(&STAGES);
        assert_eq!(list.len(), 2);
        assert_eq!(
            (list[0].status, list[0].from, list[0].to),
            (Status::Degraded, 1000, Some(3000))
        );
        assert_eq!(list[0].reason, "20 events behind, 11 s");
        assert_eq!((list[1].status, list[1].to), (Status::Down, Some(4000)));
        periods.update(5000, &[stage(Status::Degraded, "again")]);
        assert_eq!(periods.list(&STAGES)[2].to, None);
        // Past the history's length, closed periods go.
        periods.update(65_000, &[stage(Status::Degraded, "again")]);
        assert_eq!(periods.list(&STAGES).len(), 1);
    }

    #[test]
    fn lagging_starts_when_the_oldest_waiting_record_arrived() {
        let lagging = |seconds: f64, status: Status| Stage {
            lag_seconds: Some(seconds),
            ..stage(status, "behind")
        };
        let mut periods = Periods::new(600_000);
        periods.update(100_000, &[lagging(12.0, Status::Degraded)]);
        assert_eq!(periods.list(&STAGES)[0].from, 88_000);
        // Down from now on: the lag's start is the degraded period's.
        periods.update(130_000, &[lagging(42.0, Status::Down)]);
        let list = periods.list(&STAGES);
        assert_eq!((list[0].from, list[0].to), (88_000, Some(130_000)));
        assert_eq!((list[1].from, list[1].to), (130_000, None));
        // Never before the stage's previous period ended.
        periods.update(140_000, &[lagging(0.0, Status::Ok)]);
        periods.update(141_000, &[lagging(30.0, Status::Degraded)]);
        assert_eq!(periods.list(&STAGES)[2].from, 140_000);
    }
}
