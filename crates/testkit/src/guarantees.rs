//! The promises both consumers make, written once and run against each
//! store: every event of the consumer's route stored once per id whatever is
//! redelivered, outages waited out, malformed and refused records
//! dead-lettered alone, two instances splitting the partitions, a `kill -9`
//! or a SIGTERM losing and doubling nothing, `-x` consuming nothing.
//!
//! A consumer's test file implements [`StoreUnderTest`] for its store and
//! expands [`consumer_guarantees!`](crate::consumer_guarantees), which makes
//! one `#[tokio::test]` per promise. What only one store has (TimescaleDB's
//! hour totals and migrations, InfluxDB's rollup marks) stays in that
//! consumer's own tests.

use std::future::Future;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use streamproc_event::names::{consumer_group, EVENTS_TOPIC};
use streamproc_event::Route;
use streamproc_kafka::consume::rebuild::RebuildSummary;

use crate::{event_record, eventually, produce, produce_until_all_busy, InProcess, Tansu};

/// A record as the suite produces it: `(key, payload)`.
pub type TopicRecord = (String, Vec<u8>);

/// One consumer service and a fresh store of its kind, as the suite drives
/// them.
pub trait StoreUnderTest: Sized {
    /// The events this consumer stores.
    const ROUTE: Route;
    /// The service's name (`names::CONSUMER_HIGH`, …), which names its
    /// consumer group.
    const SERVICE: &'static str;
    /// Its binary (`env!("CARGO_BIN_EXE_…")`), for the tests that kill or
    /// signal the process.
    const BINARY: &'static str;
    /// Words the store's own error puts in a refused record's dead letter.
    const REFUSAL: &'static str;

    /// A new, empty store on a free port.
    fn start() -> Self;
    /// The flags that point the consumer at this store.
    fn flags(&self) -> Vec<String>;
    /// The same flags pointing at a port where nothing listens.
    fn flags_to_nowhere() -> Vec<String>;
    /// The consumer in this process, parsed from `args` (the service's
    /// name first) as its `main` would.
    fn run(args: Vec<String>) -> impl Future<Output = InProcess>;
    /// Kills the store, as a crash would.
    fn stop(&mut self);
    /// Starts it again on the same port and data.
    fn restart(&mut self);
    /// Events stored; -1 when the store does not answer.
    fn stored(&self) -> impl Future<Output = i64>;
    /// Distinct event ids stored.
    fn distinct_ids(&self) -> impl Future<Output = i64>;
    /// Whether the event `id` is stored.
    fn holds(&self, id: &str) -> impl Future<Output = bool>;
    /// Asserts what the store keeps beside the events (its per-second and
    /// per-hour totals) agrees with the events stored, and its schema is
    /// as documented.
    fn assert_consistent(&self) -> impl Future<Output = ()>;
    /// Makes the store refuse some events that the event model accepts, and
    /// returns them, keyed `refused-…`.
    fn refused_events(&self) -> impl Future<Output = Vec<TopicRecord>>;
    /// `(second, count, sum)` of every second holding events, from the
    /// totals the aggregator reads.
    fn seconds(&self) -> impl Future<Output = Vec<(i64, i64, f64)>>;
    /// Loses everything stored: TimescaleDB's tables truncated, InfluxDB's
    /// database dropped.
    fn wipe(&self) -> impl Future<Output = ()>;
    /// The service's `--rebuild-from` job in this process, parsed from
    /// `args` as its `main` would.
    fn rebuild(args: Vec<String>) -> impl Future<Output = anyhow::Result<RebuildSummary>>;
}

/// Expands to one `#[tokio::test]` per promise, for the store type given.
#[macro_export]
macro_rules! consumer_guarantees {
    ($store:ty) => {
        $crate::consumer_guarantees!(@tests $store;
            stores_exactly_its_events_once_each,
            waits_out_a_store_outage_and_catches_up_exactly,
            two_instances_split_the_partitions_and_store_each_event_once,
            malformed_records_go_to_the_dead_letter_topic_and_the_rest_flows,
            only_the_refused_events_are_dead_lettered_and_the_rest_are_stored,
            kill_9_mid_stream_then_restart_loses_and_doubles_nothing,
            sigterm_writes_commits_and_exits_0,
            disabled_consumes_nothing_and_stays_ready,
            a_wiped_store_is_rebuilt_from_the_log_while_the_consumer_runs,
        );
    };
    (@tests $store:ty; $($test:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $test() {
                $crate::guarantees::$test::<$store>().await;
            }
        )+
    };
}

/// An amount on the store's side of the watermark, varied with `i`.
fn amount<S: StoreUnderTest>(i: usize) -> f64 {
    match S::ROUTE {
        Route::High => 5.5 + (i % 4) as f64,
        Route::Low => 0.25 + (i % 5) as f64,
    }
}

/// `n` events of the store's route named `<prefix>-<i>`, ten per
/// millisecond: distinct events in one millisecond must not overwrite each
/// other.
fn events<S: StoreUnderTest>(prefix: &str, n: usize) -> Vec<TopicRecord> {
    (0..n)
        .map(|i| {
            event_record(
                &format!("{prefix}-{i}"),
                1_700_000_000_000 + (i / 10) as i64,
                amount::<S>(i),
            )
        })
        .collect()
}

/// The consumer in this process against `store` and `broker`, with short
/// batches and retries, and `extra` flags.
pub async fn start_consumer<S: StoreUnderTest>(
    store: &S,
    broker: &Tansu,
    extra: &[&str],
) -> InProcess {
    let mut args = vec![
        S::SERVICE.to_owned(),
        "--kafka-brokers".to_owned(),
        broker.brokers(),
        "--batch-max-age".to_owned(),
        "20ms".to_owned(),
        "--retry-max".to_owned(),
        "500ms".to_owned(),
    ];
    args.extend(store.flags());
    args.extend(extra.iter().map(|&arg| arg.to_owned()));
    S::run(args).await
}

/// Waits until the store holds `expected` events and the group has
/// committed all `records` of the topic (the consumers commit only after
/// writing: nothing is left to arrive late), then checks the count is
/// exactly that (nothing late, nothing doubled), one per id, and the
/// store's totals agree.
pub async fn assert_settles_at<S: StoreUnderTest>(
    store: &S,
    expected: i64,
    broker: &Tansu,
    records: usize,
) {
    let reached = eventually(Duration::from_secs(60), || async {
        store.stored().await >= expected
    })
    .await;
    assert!(
        reached,
        "only {} of {expected} events arrived",
        store.stored().await
    );
    let committed = broker
        .wait_committed(
            &consumer_group(S::SERVICE),
            EVENTS_TOPIC,
            records,
            Duration::from_secs(60),
        )
        .await;
    assert!(committed, "the {records} records were not all committed");
    assert_eq!(store.stored().await, expected, "events after settling");
    assert_eq!(store.distinct_ids().await, expected, "one per event id");
    store.assert_consistent().await;
}

async fn ready(consumer: &InProcess) {
    let ready = eventually(Duration::from_secs(30), || async {
        consumer.get("/readyz").await.status().is_success()
    })
    .await;
    assert!(ready, "the consumer never became ready");
}

pub async fn stores_exactly_its_events_once_each<S: StoreUnderTest>() {
    let broker = Tansu::start();
    broker.create_topic(EVENTS_TOPIC, 3).await;
    let store = S::start();

    let mut records = vec![
        event_record("at-watermark", 1_700_000_000_000, 5.0),
        event_record("just-above", 1_700_000_000_001, 5.0_f64.next_up()),
        event_record("far-low", 1_700_000_000_002, -3.5),
        event_record("far-high", 1_700_000_000_003, 9.5),
    ];
    records.extend(events::<S>("mine", 300));
    // Redelivered records: the same ids, times and amounts again.
    records.extend(events::<S>("mine", 30));
    produce(&broker.brokers(), EVENTS_TOPIC, &records).await;

    let consumer = start_consumer(&store, &broker, &[]).await;
    assert_settles_at(&store, 302, &broker, records.len()).await;
    let (mine, theirs) = match S::ROUTE {
        Route::High => (["just-above", "far-high"], ["at-watermark", "far-low"]),
        Route::Low => (["at-watermark", "far-low"], ["just-above", "far-high"]),
    };
    for id in mine {
        assert!(store.holds(id).await, "{id} is stored");
    }
    for id in theirs {
        assert!(!store.holds(id).await, "{id} belongs to the other store");
    }
    assert_eq!(
        consumer.metric("events_consumed_total").await,
        records.len() as f64,
        "every record is read, whichever store it is for"
    );
    consumer.stop().await;
}

pub async fn waits_out_a_store_outage_and_catches_up_exactly<S: StoreUnderTest>() {
    let broker = Tansu::start();
    broker.create_topic(EVENTS_TOPIC, 2).await;
    let mut store = S::start();
    let consumer = start_consumer(&store, &broker, &[]).await;

    produce(&broker.brokers(), EVENTS_TOPIC, &events::<S>("before", 50)).await;
    assert_settles_at(&store, 50, &broker, 50).await;

    store.stop();
    produce(&broker.brokers(), EVENTS_TOPIC, &events::<S>("during", 200)).await;
    let retried = eventually(Duration::from_secs(20), || async {
        consumer.metric("sink_write_failures_total").await >= 2.0
    })
    .await;
    assert!(retried, "the consumer retries while its store is down");
    assert_eq!(consumer.get("/readyz").await.status(), 503);
    // Records that arrive meanwhile are read while the batch in hand is
    // retried: from then until the store is back, the loop waits on the
    // store, and says so.
    produce(&broker.brokers(), EVENTS_TOPIC, &events::<S>("later", 50)).await;
    let waited_before = consumer
        .metric("consumer_waited_on_store_seconds_total")
        .await;

    store.restart();
    assert_settles_at(&store, 300, &broker, 300).await;
    let waited = consumer
        .metric("consumer_waited_on_store_seconds_total")
        .await
        - waited_before;
    assert!(
        waited > 0.0,
        "the outage is time waited on the store, not for records"
    );
    consumer.stop().await;
}

pub async fn two_instances_split_the_partitions_and_store_each_event_once<S: StoreUnderTest>() {
    let broker = Tansu::start();
    broker.create_topic(EVENTS_TOPIC, 4).await;
    let store = S::start();
    let a = start_consumer(&store, &broker, &[]).await;
    let b = start_consumer(&store, &broker, &[]).await;

    // Every round's events fall in the same second, so both instances
    // write to the same seconds' totals.
    let rounds = produce_until_all_busy(&broker.brokers(), EVENTS_TOPIC, &[&a, &b], |n| {
        events::<S>(&format!("round{n}"), 40)
    })
    .await;
    assert_settles_at(&store, rounds as i64 * 40, &broker, rounds * 40).await;
    a.stop().await;
    b.stop().await;
}

/// Records that are not valid events, each with the route whose consumer
/// writes its one dead letter and the words its reason must hold: an amount
/// that can be read decides, the rest are Low's (see
/// `Watermark::route_invalid`).
pub fn malformed_records() -> Vec<(TopicRecord, Route, &'static str)> {
    let record = |key: &str, payload: &str| (key.to_owned(), payload.as_bytes().to_vec());
    vec![
        (record("garbage", "not json"), Route::Low, "not valid JSON"),
        (
            record("no-amount", r#"{"id":"no-amount","time":1}"#),
            Route::Low,
            "missing field `amount`",
        ),
        (
            record("nan", r#"{"id":"nan","time":1,"amount":"NaN"}"#),
            Route::Low,
            "amount",
        ),
        (
            record("no-time-high", r#"{"id":"no-time-high","amount":9.5}"#),
            Route::High,
            "missing field `time`",
        ),
        (
            record("no-time-low", r#"{"id":"no-time-low","amount":1.5}"#),
            Route::Low,
            "missing field `time`",
        ),
    ]
}

pub async fn malformed_records_go_to_the_dead_letter_topic_and_the_rest_flows<S: StoreUnderTest>() {
    let broker = Tansu::start();
    broker.create_topic(EVENTS_TOPIC, 1).await;
    let store = S::start();
    let malformed = malformed_records();
    let mut records: Vec<_> = malformed
        .iter()
        .map(|(record, ..)| record.clone())
        .collect();
    records.extend(events::<S>("after", 20));
    produce(&broker.brokers(), EVENTS_TOPIC, &records).await;

    let consumer = start_consumer(&store, &broker, &[]).await;
    assert_settles_at(&store, 20, &broker, records.len()).await;
    let mine: Vec<_> = malformed
        .iter()
        .filter(|(_, owner, _)| *owner == S::ROUTE)
        .collect();
    let dead = consumer.dead_letters(&broker.brokers(), mine.len()).await;
    let keys: Vec<_> = dead.iter().filter_map(|r| r.key.clone()).collect();
    let expected: Vec<_> = mine.iter().map(|((key, _), ..)| key.clone()).collect();
    assert_eq!(keys, expected, "only the records this route owns");
    for (record, ((_, payload), _, reason)) in dead.iter().zip(&mine) {
        assert_eq!(
            record.payload.as_bytes(),
            payload.as_slice(),
            "the original bytes are kept"
        );
        assert!(record.reason().contains(reason), "{}", record.reason());
    }
    assert_eq!(
        consumer.metric("events_dead_lettered_total").await,
        mine.len() as f64
    );
    consumer.stop().await;
}

/// Far from the events the stores refuse (InfluxDB refuses by week).
const GOOD_MS: i64 = 1_760_000_000_000;

pub async fn only_the_refused_events_are_dead_lettered_and_the_rest_are_stored<
    S: StoreUnderTest,
>() {
    let broker = Tansu::start();
    broker.create_topic(EVENTS_TOPIC, 1).await;
    let store = S::start();
    let consumer = start_consumer(&store, &broker, &[]).await;
    ready(&consumer).await;
    let refused = store.refused_events().await;

    // One batch: 30 good events, the ones the store refuses among them, and
    // two whose amounts would overflow the per-second sum (refused by the
    // bounds before the store sees them).
    let huge = match S::ROUTE {
        Route::High => 1.7e308,
        Route::Low => -1.7e308,
    };
    let mut records: Vec<_> = (0..30)
        .map(|i| event_record(&format!("good-{i}"), GOOD_MS + i, amount::<S>(i as usize)))
        .collect();
    for (i, record) in refused.iter().enumerate() {
        records.insert(7 + 11 * i, record.clone());
    }
    records.push(event_record("huge-a", GOOD_MS, huge));
    records.push(event_record("huge-b", GOOD_MS, huge));
    produce(&broker.brokers(), EVENTS_TOPIC, &records).await;

    let dead = consumer
        .dead_letters(&broker.brokers(), refused.len() + 2)
        .await;
    let mut keys: Vec<_> = dead.iter().filter_map(|r| r.key.clone()).collect();
    keys.sort();
    let mut expected: Vec<_> = refused.iter().map(|(key, _)| key.clone()).collect();
    expected.extend(["huge-a".to_owned(), "huge-b".to_owned()]);
    expected.sort();
    assert_eq!(keys, expected);
    for record in &dead {
        let reason = record.reason();
        if record
            .key
            .as_deref()
            .unwrap_or_default()
            .starts_with("huge")
        {
            assert!(reason.contains("EVENT_MAX_AMOUNT"), "{reason}");
        } else {
            assert!(
                reason.contains("rejected by the store") && reason.contains(S::REFUSAL),
                "{reason}"
            );
        }
    }
    assert!(consumer.metric("sink_write_rejections_total").await >= 1.0);

    // The partition moves on: an event sent after them is stored, and the
    // totals count exactly the stored events.
    let after = event_record("after", GOOD_MS + 100, amount::<S>(0));
    produce(&broker.brokers(), EVENTS_TOPIC, &[after]).await;
    assert_settles_at(&store, 31, &broker, records.len() + 1).await;
    assert!(consumer.get("/readyz").await.status().is_success());
    consumer.stop().await;
}

/// The consumer binary, for the tests that kill or signal it; killed when
/// dropped, so a failing test leaves no process behind.
struct Binary(Child);

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_binary<S: StoreUnderTest>(store: &S, broker: &Tansu, extra: &[&str]) -> Binary {
    let child = Command::new(S::BINARY)
        .args(["--port", "0", "--kafka-brokers", &broker.brokers()])
        .args(store.flags())
        .args(["--batch-max-age", "20ms"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("{} does not start: {e}", S::BINARY));
    Binary(child)
}

pub async fn kill_9_mid_stream_then_restart_loses_and_doubles_nothing<S: StoreUnderTest>() {
    let broker = Tansu::start();
    broker.create_topic(EVENTS_TOPIC, 3).await;
    let store = S::start();
    let total = 5_000;
    produce(&broker.brokers(), EVENTS_TOPIC, &events::<S>("bulk", total)).await;

    // Small batches make the run long enough to interrupt.
    let mut child = spawn_binary(&store, &broker, &["--batch-max-events", "10"]);
    let started = eventually(Duration::from_secs(60), || async {
        store.stored().await > 0
    })
    .await;
    assert!(started, "nothing stored before the kill");
    child.0.kill().expect("SIGKILL"); // no flush, no commit
    child.0.wait().expect("the killed consumer is reaped");
    let at_kill = store.stored().await;
    assert!(
        at_kill < total as i64,
        "the kill came after the end ({at_kill} stored); use more events"
    );

    let _restarted = spawn_binary(&store, &broker, &[]);
    assert_settles_at(&store, total as i64, &broker, total).await;
}

pub async fn sigterm_writes_commits_and_exits_0<S: StoreUnderTest>() {
    let broker = Tansu::start();
    broker.create_topic(EVENTS_TOPIC, 2).await;
    let store = S::start();
    let records = events::<S>("term", 300);
    produce(&broker.brokers(), EVENTS_TOPIC, &records).await;

    let mut child = spawn_binary(&store, &broker, &[]);
    assert_settles_at(&store, 300, &broker, records.len()).await;
    let status = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let exit = child.0.wait().expect("the consumer exits");
    assert!(exit.success(), "exit status {exit}");
    let committed = broker
        .committed_offsets(&consumer_group(S::SERVICE), EVENTS_TOPIC, 2)
        .await
        .iter()
        .sum::<i64>();
    assert_eq!(
        committed,
        records.len() as i64,
        "the committed offsets cover every record after the exit"
    );
}

pub async fn disabled_consumes_nothing_and_stays_ready<S: StoreUnderTest>() {
    // Neither a broker nor the store exists: a disabled consumer needs
    // neither.
    let mut args = vec![
        S::SERVICE.to_owned(),
        "-x".to_owned(),
        "--kafka-brokers".to_owned(),
        format!("127.0.0.1:{}", crate::free_port()),
    ];
    args.extend(S::flags_to_nowhere());
    let consumer = S::run(args).await;
    assert_eq!(consumer.get("/readyz").await.status(), 200);
    assert_eq!(consumer.get("/").await.text().await.unwrap(), "ok");
    let metrics = consumer.get("/metrics").await.text().await.unwrap();
    assert!(
        !metrics.contains("events_consumed"),
        "no consume loop when disabled: {metrics}"
    );
    consumer.stop().await;
}

/// The store is lost while its consumer runs; `--rebuild-from beginning`
/// brings back every second's count and sum as they were, the consumer goes
/// on storing new events meanwhile, its group is not moved, and the
/// records that could not be stored are counted, not dead-lettered again.
pub async fn a_wiped_store_is_rebuilt_from_the_log_while_the_consumer_runs<S: StoreUnderTest>() {
    let broker = Tansu::start();
    broker.create_topic(EVENTS_TOPIC, 3).await;
    let store = S::start();
    // Over ten minutes, so that many seconds have totals to compare.
    let spread = |prefix: &str, n: usize, from: i64| -> Vec<TopicRecord> {
        (0..n)
            .map(|i| {
                event_record(
                    &format!("{prefix}-{i}"),
                    from + i as i64 * 997,
                    amount::<S>(i),
                )
            })
            .collect()
    };
    let mut records = spread("kept", 600, 1_700_000_000_000);
    records.extend(spread("kept", 40, 1_700_000_000_000)); // redelivered: stored once
    records.push(("garbage".to_owned(), b"not json".to_vec()));
    let theirs = match S::ROUTE {
        Route::High => 1.5,
        Route::Low => 7.5,
    };
    records.push(event_record("theirs", 1_700_000_000_500, theirs));
    produce(&broker.brokers(), EVENTS_TOPIC, &records).await;
    let consumer = start_consumer(&store, &broker, &[]).await;
    assert_settles_at(&store, 600, &broker, records.len()).await;
    let before = store.seconds().await;
    assert!(before.len() >= 50, "events over many seconds: {before:?}");
    let dead_before = consumer.metric("events_dead_lettered_total").await;

    store.wipe().await;
    assert_eq!(store.stored().await, 0, "wiped");
    // Live events keep coming while the store is rebuilt.
    let live = spread("live", 100, 1_700_086_400_000);
    produce(&broker.brokers(), EVENTS_TOPIC, &live).await;
    let mut args = vec![
        S::SERVICE.to_owned(),
        "--kafka-brokers".to_owned(),
        broker.brokers(),
        "--rebuild-from".to_owned(),
        "beginning".to_owned(),
    ];
    args.extend(store.flags());
    let summary = S::rebuild(args).await.expect("the rebuild finishes");
    let total = records.len() + live.len();
    assert!(
        summary.records as usize >= records.len(),
        "read the topic as it was when it began: {summary}"
    );
    let owned_bad = usize::from(S::ROUTE == Route::Low);
    assert_eq!(summary.not_stored as usize, owned_bad, "{summary}");

    assert_settles_at(&store, 700, &broker, total).await;
    let kept: Vec<(i64, i64, f64)> = store
        .seconds()
        .await
        .into_iter()
        .filter(|(second, _, _)| before.iter().any(|(s, _, _)| s == second))
        .collect();
    assert_eq!(kept.len(), before.len(), "every second is back");
    for ((second, count, sum), (_, was_count, was_sum)) in kept.iter().zip(&before) {
        assert_eq!(count, was_count, "count of second {second}");
        assert!(
            (sum - was_sum).abs() <= 1e-9 * was_sum.abs().max(1.0),
            "sum of second {second}: {sum} != {was_sum}"
        );
    }
    let committed = broker
        .committed_offsets(&consumer_group(S::SERVICE), EVENTS_TOPIC, 3)
        .await;
    assert_eq!(
        committed.iter().sum::<i64>() as usize,
        total,
        "the group's offsets were not moved back"
    );
    assert_eq!(
        consumer.metric("events_dead_lettered_total").await,
        dead_before,
        "nothing dead-lettered twice"
    );
    consumer.stop().await;
}
