//! The periods when a stage was degraded or down, for the chart to mark:
//! one opens when a stage leaves its status, and closes when the stage
//! changes status again. Kept for the history's length, and at most
//! `MAX_PERIODS`, so a flapping stage cannot grow the answer without bound.

use std::collections::{HashMap, VecDeque};

use super::snapshot::{Period, Stage, Status};

const MAX_PERIODS: usize = 200;

pub struct Periods {
    open: HashMap<&'static str, Period>,
    closed: VecDeque<Period>,
    keep_ms: i64,
}

impl Periods {
    pub fn new(keep_ms: i64) -> Self {
        Self {
            open: HashMap::new(),
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
            if let Some(mut period) = self.open.remove(stage.name) {
                period.to = Some(now_ms);
                self.closed.push_back(period);
            }
            if stage.status != Status::Ok {
                self.open.insert(
                    stage.name,
                    Period {
                        stage: stage.name,
                        status: stage.status,
                        reason: stage.reason.clone().unwrap_or_default(),
                        from: now_ms,
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
}
