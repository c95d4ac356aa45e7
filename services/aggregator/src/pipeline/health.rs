//! Judging each stage from one probe and the history before it: its status,
//! the reason in words, and its figures. Pure, so every rule is tested
//! without a broker.

use std::time::Duration;

use streamproc_kafka::offsets::GroupPosition;

use super::event_api::ApiSample;
use super::failure::Failure;
use super::history::{History, Point};
use super::kafka::KafkaSample;
use super::replicas::Readiness;
use super::snapshot::{Figures, GroupFigures, PartitionFigures, Stage, Status, Thresholds};
use super::stores::StoreSample;

/// Everything one probe found.
#[derive(Debug, Clone)]
pub struct Probe {
    pub time_ms: i64,
    pub api: ApiSample,
    pub kafka: KafkaSample,
    /// consumer-high's replicas, then consumer-low's, where their URLs are
    /// set (CONSUMER_HIGH_URL, CONSUMER_LOW_URL).
    pub members: [Option<Readiness>; 2],
    pub timescale: StoreSample,
    pub influx: StoreSample,
}

/// The names that tie the stages to Kafka.
#[derive(Debug, Clone)]
pub struct Names {
    pub topic: String,
    pub dead_letter_topic: String,
    /// consumer-high's group, then consumer-low's.
    pub groups: [String; 2],
}

#[derive(Debug, Clone, Copy)]
pub struct Rules {
    pub lag_events: u64,
    pub lag_seconds: Duration,
    pub stall_after: Duration,
    pub slow_store: Duration,
    pub rate_window: Duration,
}

impl Rules {
    pub fn thresholds(&self) -> Thresholds {
        Thresholds {
            lag_events: self.lag_events,
            lag_seconds: self.lag_seconds.as_secs_f64(),
            stall_seconds: self.stall_after.as_secs_f64(),
            slow_store_ms: self.slow_store.as_secs_f64() * 1000.0,
        }
    }
}

/// What history keeps of a probe.
pub fn point(probe: &Probe) -> Point {
    let ends = probe.kafka.ends.as_ref().ok();
    Point {
        time_ms: probe.time_ms,
        ends: ends
            .map(|ends| ends.iter().map(|e| (e.partition, e.high)).collect())
            .unwrap_or_default(),
        records: ends.map(|ends| ends.iter().map(|e| e.high as f64).sum()),
        dead_lettered: probe.kafka.dead_lettered.map(|n| n as f64),
        positions: probe
            .kafka
            .groups
            .iter()
            .map(|group| {
                let positions = group.as_ref().ok()?;
                Some(positions.iter().map(|p| p.position as f64).sum())
            })
            .collect(),
        accepted: probe.api.counters.map(|c| c.accepted),
        rejected: probe.api.counters.map(|c| c.rejected),
        shed: probe.api.counters.map(|c| c.shed),
    }
}

/// Every stage, in pipeline order, judged from `probe` (already the newest
/// point of `history`).
pub fn judge(probe: &Probe, history: &History, names: &Names, rules: &Rules) -> Vec<Stage> {
    let window = i64::try_from(rules.rate_window.as_millis()).unwrap_or(i64::MAX);
    let rate = |value: fn(&Point) -> Option<f64>| history.rate(window, value).map(round2);
    let stores = [&probe.timescale, &probe.influx];
    let mut stages = vec![
        event_api(
            &probe.api,
            rate(|p| p.accepted),
            rate(|p| p.rejected),
            rate(|p| p.shed),
        ),
        kafka(probe, names, rate(|p| p.records), rate(|p| p.dead_lettered)),
    ];
    for (index, name) in ["consumer-high", "consumer-low"].into_iter().enumerate() {
        let committed_rate = history
            .rate(window, |p| p.positions.get(index).copied().flatten())
            .map(round2);
        let stalled_ms = history.unchanged_ms(|p| p.positions.get(index).copied().flatten());
        stages.push(consumer(ConsumerInput {
            name,
            group: &names.groups[index],
            kafka: &probe.kafka,
            index,
            history,
            now_ms: probe.time_ms,
            committed_rate,
            stalled_ms,
            stored_per_second: stores[index].stored_per_second.map(round2),
            members: probe.members[index].as_ref(),
            rules,
        }));
    }
    stages.push(store("timescaledb", &probe.timescale, rules));
    stages.push(store("influxdb", &probe.influx, rules));
    stages
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

fn ok_or(problems: Vec<(Status, String)>) -> (Status, Option<String>) {
    let worst = problems.iter().map(|(status, _)| *status).max();
    match worst {
        None => (Status::Ok, None),
        Some(status) => {
            let reasons: Vec<String> = problems
                .into_iter()
                .filter(|(s, _)| *s == status)
                .map(|(_, reason)| reason)
                .collect();
            (status, Some(reasons.join("; ")))
        }
    }
}

fn event_api(
    api: &ApiSample,
    accepted: Option<f64>,
    rejected: Option<f64>,
    shed: Option<f64>,
) -> Stage {
    let mut problems: Vec<_> = replica_problem(&api.readiness).into_iter().collect();
    if let Some(shed) = shed.filter(|&shed| shed > 0.0) {
        problems.push((
            Status::Degraded,
            format!("shedding {} requests/s (429/503)", decimal(shed)),
        ));
    }
    let (status, reason) = ok_or(problems);
    Stage {
        name: "event-api",
        status,
        reason,
        events_per_second: accepted,
        lag_events: None,
        lag_seconds: None,
        figures: Figures::EventApi {
            replicas: api.readiness.replicas,
            ready: api.readiness.ready,
            accepted_per_second: accepted,
            rejected_per_second: rejected,
            shed_per_second: shed,
        },
    }
}

/// None ready is down, some not ready degraded; the reason is the first
/// replica's own.
fn replica_problem(readiness: &Readiness) -> Option<(Status, String)> {
    let why = || {
        readiness
            .not_ready
            .clone()
            .unwrap_or_else(|| "not ready".into())
    };
    if readiness.ready == 0 {
        Some((Status::Down, why()))
    } else if readiness.ready < readiness.replicas {
        let (ready, replicas) = (readiness.ready, readiness.replicas);
        Some((
            Status::Degraded,
            format!("{ready} of {replicas} replicas ready: {}", why()),
        ))
    } else {
        None
    }
}

fn kafka(probe: &Probe, names: &Names, records: Option<f64>, dead: Option<f64>) -> Stage {
    let (status, reason, partitions) = match &probe.kafka.ends {
        Ok(ends) => (
            Status::Ok,
            None,
            ends.iter()
                .map(|e| PartitionFigures {
                    partition: e.partition,
                    low: e.low,
                    high: e.high,
                })
                .collect(),
        ),
        Err(reason) => (Status::Down, Some(reason.to_string()), Vec::new()),
    };
    let total = probe
        .kafka
        .ends
        .as_ref()
        .ok()
        .map(|ends| ends.iter().map(|e| e.high).sum());
    Stage {
        name: "kafka",
        status,
        reason,
        events_per_second: records,
        lag_events: None,
        lag_seconds: None,
        figures: Figures::Kafka {
            topic: names.topic.clone(),
            partitions,
            records: total,
            dead_letter_topic: names.dead_letter_topic.clone(),
            dead_lettered: probe.kafka.dead_lettered,
            dead_lettered_per_second: dead,
        },
    }
}

struct ConsumerInput<'a> {
    name: &'static str,
    group: &'a str,
    kafka: &'a KafkaSample,
    index: usize,
    history: &'a History,
    now_ms: i64,
    committed_rate: Option<f64>,
    stalled_ms: i64,
    stored_per_second: Option<f64>,
    members: Option<&'a Readiness>,
    rules: &'a Rules,
}

fn consumer(input: ConsumerInput<'_>) -> Stage {
    let rules = input.rules;
    let answer: Result<&Vec<GroupPosition>, Failure> = match &input.kafka.ends {
        Err(_) => Err("lag unknown: Kafka does not answer".into()),
        Ok(_) => match input.kafka.groups.get(input.index) {
            Some(Ok(positions)) => Ok(positions),
            Some(Err(error)) => Err(format!("lag unknown: {error}").into()),
            None => Err("lag unknown: the group is not watched".into()),
        },
    };
    let (status, reason, lag_events, lag_seconds, partitions) = match answer {
        Err(reason) => (
            Status::Degraded,
            Some(reason.to_string()),
            None,
            None,
            Vec::new(),
        ),
        Ok(positions) => {
            let lag: i64 = positions.iter().map(|p| p.lag).sum();
            let seconds = input.history.lag_seconds(input.now_ms, positions);
            // Committing nothing counts from when events started waiting,
            // not from the last commit before an idle spell.
            let stalled = (input.stalled_ms as f64 / 1000.0).min(seconds);
            let behind = || format!("{} behind, {} s", events(lag), seconds.floor());
            let mut problems = Vec::new();
            if lag > 0 && stalled >= rules.stall_after.as_secs_f64() {
                problems.push((
                    Status::Down,
                    format!("{}; nothing committed for {} s", behind(), stalled.floor()),
                ));
            } else if lag > 0
                && (lag.unsigned_abs() >= rules.lag_events
                    || seconds >= rules.lag_seconds.as_secs_f64())
            {
                problems.push((Status::Degraded, behind()));
            }
            let (status, reason) = ok_or(problems);
            let partitions = positions
                .iter()
                .map(|p| GroupFigures {
                    partition: p.partition,
                    committed: p.committed,
                    lag: p.lag,
                })
                .collect();
            (status, reason, Some(lag), Some(round2(seconds)), partitions)
        }
    };
    // The replicas' own readiness, where they are watched, beside the lag.
    let members = input.members.and_then(replica_problem);
    let (status, reason) = match (reason, members) {
        (reason, None) => (status, reason),
        (None, Some(problem)) => ok_or(vec![problem]),
        (Some(reason), Some(problem)) => ok_or(vec![(status, reason), problem]),
    };
    Stage {
        name: input.name,
        status,
        reason,
        events_per_second: input.stored_per_second,
        lag_events,
        lag_seconds,
        figures: Figures::Consumer {
            group: input.group.to_owned(),
            partitions,
            records_per_second: input.committed_rate,
            replicas: input.members.map(|m| m.replicas),
            ready: input.members.map(|m| m.ready),
        },
    }
}

fn store(name: &'static str, sample: &StoreSample, rules: &Rules) -> Stage {
    let (status, reason, latency_ms) = match &sample.latency {
        Err(error) => (
            Status::Down,
            Some(format!("does not answer: {error}")),
            None,
        ),
        Ok(took) => {
            let ms = took.as_secs_f64() * 1000.0;
            if *took >= rules.slow_store {
                let reason = format!("slow: answered in {} ms", grouped(ms.round() as i64));
                (Status::Degraded, Some(reason), Some(ms))
            } else {
                (Status::Ok, None, Some(ms))
            }
        }
    };
    Stage {
        name,
        status,
        reason,
        events_per_second: None,
        lag_events: None,
        lag_seconds: None,
        figures: Figures::Store {
            latency_ms: latency_ms.map(round2),
            stored_per_second: sample.stored_per_second.map(round2),
        },
    }
}

/// "1 event", "12 400 events".
fn events(n: i64) -> String {
    if n == 1 {
        "1 event".into()
    } else {
        format!("{} events", grouped(n))
    }
}

/// Thousands separated by spaces, as in "12 400".
pub fn grouped(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

fn decimal(value: f64) -> String {
    if value >= 10.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::event_api::ApiCounters;
    use streamproc_kafka::offsets::PartitionEnds;

    fn rules() -> Rules {
        Rules {
            lag_events: 10_000,
            lag_seconds: Duration::from_secs(10),
            stall_after: Duration::from_secs(30),
            slow_store: Duration::from_secs(1),
            rate_window: Duration::from_secs(10),
        }
    }

    fn names() -> Names {
        Names {
            topic: "events".into(),
            dead_letter_topic: "events.dlq".into(),
            groups: ["high".into(), "low".into()],
        }
    }

    fn healthy_store() -> StoreSample {
        StoreSample {
            latency: Ok(Duration::from_millis(3)),
            stored_per_second: Some(2.0),
        }
    }

    /// A probe at `time_ms` with the topic ending at `end` (one partition),
    /// consumer-high at `high` and consumer-low at `low`.
    fn probe(time_ms: i64, end: i64, high: i64, low: i64) -> Probe {
        let at = |position: i64| {
            Ok(vec![GroupPosition {
                partition: 0,
                committed: Some(position),
                position,
                lag: end - position,
            }])
        };
        Probe {
            time_ms,
            api: ApiSample {
                readiness: Readiness {
                    replicas: 1,
                    ready: 1,
                    not_ready: None,
                },
                counters: Some(ApiCounters {
                    accepted: end as f64,
                    ..ApiCounters::default()
                }),
            },
            kafka: KafkaSample {
                ends: Ok(vec![PartitionEnds {
                    partition: 0,
                    low: 0,
                    high: end,
                }]),
                dead_lettered: Some(0),
                groups: vec![at(high), at(low)],
            },
            members: [None, None],
            timescale: healthy_store(),
            influx: healthy_store(),
        }
    }

    /// Runs probes through history as the monitor does; the last judgement.
    fn run(probes: impl IntoIterator<Item = Probe>) -> Vec<Stage> {
        let mut history = History::new(3_600_000, 10_000);
        let mut stages = Vec::new();
        for probe in probes {
            history.push(point(&probe));
            stages = judge(&probe, &history, &names(), &rules());
        }
        stages
    }

    fn stage<'a>(stages: &'a [Stage], name: &str) -> &'a Stage {
        stages.iter().find(|s| s.name == name).unwrap()
    }

    #[test]
    fn a_flowing_pipeline_is_ok_with_its_rates() {
        // 100 events/s, both groups keeping up.
        let stages = run((0..=20).map(|s| probe(s * 1000, s * 100, s * 100, s * 100)));
        let names: Vec<&str> = stages.iter().map(|s| s.name).collect();
        assert_eq!(names, super::super::snapshot::STAGES);
        for stage in &stages {
            assert_eq!(
                (stage.status, &stage.reason),
                (Status::Ok, &None),
                "{stage:?}"
            );
        }
        assert_eq!(stage(&stages, "kafka").events_per_second, Some(100.0));
        assert_eq!(stage(&stages, "event-api").events_per_second, Some(100.0));
        let high = stage(&stages, "consumer-high");
        assert_eq!((high.lag_events, high.lag_seconds), (Some(0), Some(0.0)));
        assert_eq!(high.events_per_second, Some(2.0));
    }

    #[test]
    fn a_stopped_consumer_degrades_then_goes_down_and_says_how_far_behind() {
        // consumer-high stops at 10 s while 1 240 events/s keep coming.
        let probes = (0..=60).map(|s| {
            let end = s * 1240;
            probe(s * 1000, end, end.min(12_400), end)
        });
        let mut history = History::new(3_600_000, 10_000);
        let mut degraded_at = None;
        let mut down_at = None;
        for probe in probes {
            history.push(point(&probe));
            let stages = judge(&probe, &history, &names(), &rules());
            let high = stage(&stages, "consumer-high");
            if high.status == Status::Degraded && degraded_at.is_none() {
                degraded_at = Some(probe.time_ms);
                // 10 000 events behind comes first, at 19 s.
                assert_eq!(
                    high.reason.as_deref(),
                    Some("11 160 events behind, 8 s"),
                    "{high:?}"
                );
            }
            if high.status == Status::Down && down_at.is_none() {
                down_at = Some(probe.time_ms);
                assert!(
                    high.reason
                        .as_ref()
                        .unwrap()
                        .contains("nothing committed for 30 s"),
                    "{high:?}"
                );
            }
            assert_eq!(stage(&stages, "consumer-low").status, Status::Ok);
        }
        assert_eq!(degraded_at, Some(19_000));
        // Events waiting since 11 s (the first probe past offset 12 400).
        assert_eq!(down_at, Some(41_000));
    }

    #[test]
    fn lag_in_seconds_alone_degrades_a_slow_trickle() {
        // One event at 5 s that consumer-low never takes.
        let stages = run((0..=16).map(|s| {
            let end = i64::from(s >= 5);
            probe(s * 1000, end, end, 0)
        }));
        let low = stage(&stages, "consumer-low");
        assert_eq!(low.status, Status::Degraded);
        assert_eq!(low.reason.as_deref(), Some("1 event behind, 11 s"));
    }

    #[test]
    fn a_broker_that_does_not_answer_is_down_and_the_lag_unknown() {
        let mut last = probe(1000, 10, 10, 10);
        last.kafka = KafkaSample {
            ends: Err("does not answer: timed out".into()),
            dead_lettered: None,
            groups: vec![Err("Kafka does not answer".into()); 2],
        };
        last.api.readiness.ready = 0;
        last.api.readiness.not_ready = Some("not ready: kafka: all brokers down".into());
        let stages = run([probe(0, 10, 10, 10), last]);
        let kafka = stage(&stages, "kafka");
        assert_eq!(kafka.status, Status::Down);
        assert_eq!(kafka.reason.as_deref(), Some("does not answer: timed out"));
        let api = stage(&stages, "event-api");
        assert_eq!(api.status, Status::Down);
        assert_eq!(
            api.reason.as_deref(),
            Some("not ready: kafka: all brokers down")
        );
        let high = stage(&stages, "consumer-high");
        assert_eq!(high.status, Status::Degraded);
        assert_eq!(high.lag_events, None);
    }

    #[test]
    fn stores_down_or_slow_and_shedding_are_named() {
        let mut last = probe(10_000, 10, 10, 10);
        last.timescale.latency = Err("connection refused".into());
        last.influx.latency = Ok(Duration::from_millis(1500));
        last.api.counters = last.api.counters.map(|c| ApiCounters { shed: 20.0, ..c });
        let stages = run([probe(0, 10, 10, 10), last]);
        let timescale = stage(&stages, "timescaledb");
        assert_eq!(timescale.status, Status::Down);
        assert_eq!(
            timescale.reason.as_deref(),
            Some("does not answer: connection refused")
        );
        let influx = stage(&stages, "influxdb");
        assert_eq!(influx.reason.as_deref(), Some("slow: answered in 1 500 ms"));
        let api = stage(&stages, "event-api");
        assert_eq!(api.status, Status::Degraded);
        assert_eq!(
            api.reason.as_deref(),
            Some("shedding 2.0 requests/s (429/503)")
        );
    }

    #[test]
    fn every_consumer_replica_is_counted_and_one_not_ready_degrades() {
        let mut last = probe(1000, 10, 10, 10);
        let not_ready = Some("not ready: store: connection refused".to_owned());
        last.members = [
            Some(Readiness {
                replicas: 2,
                ready: 2,
                not_ready: None,
            }),
            Some(Readiness {
                replicas: 3,
                ready: 2,
                not_ready: not_ready.clone(),
            }),
        ];
        let stages = run([probe(0, 10, 10, 10), last.clone()]);
        let high = stage(&stages, "consumer-high");
        assert_eq!((high.status, high.reason.as_deref()), (Status::Ok, None));
        let low = stage(&stages, "consumer-low");
        assert_eq!(low.status, Status::Degraded);
        assert_eq!(
            low.reason.as_deref(),
            Some("2 of 3 replicas ready: not ready: store: connection refused")
        );
        let Figures::Consumer {
            replicas, ready, ..
        } = &low.figures
        else {
            panic!("{:?}", low.figures)
        };
        assert_eq!((*replicas, *ready), (Some(3), Some(2)));

        // None ready is down, whatever the lag says.
        last.members[0] = Some(Readiness::none_found(
            "cannot resolve consumer-high-pods".into(),
        ));
        let stages = run([probe(0, 10, 10, 10), last]);
        let high = stage(&stages, "consumer-high");
        assert_eq!(high.status, Status::Down);
        assert_eq!(
            high.reason.as_deref(),
            Some("cannot resolve consumer-high-pods")
        );
    }

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(12_400), "12 400");
        assert_eq!(grouped(1_234_567), "1 234 567");
        assert_eq!(grouped(-1000), "-1 000");
    }
}
