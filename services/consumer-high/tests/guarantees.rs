//! consumer-high against a real tansu broker and a real PostgreSQL with
//! TimescaleDB: exact routing, one row per event id whatever is redelivered,
//! outages waited out, malformed records dead-lettered, records the store
//! refuses isolated and dead-lettered alone, per-second and per-hour totals
//! equal to the stored events, a stuck write reported by
//! `/readyz`, clean shutdown.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use clap::Parser;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use testkit::{
    event_record, eventually, produce, produce_until_all_busy, InProcess, Postgres, Tansu,
};

const TOPIC: &str = "events";
const GROUP: &str = "streamproc-consumer-high";

/// consumer-high in this process, with short batches and retries.
async fn start(brokers: &str, postgres: &Postgres, extra: &[&str]) -> InProcess {
    let url = postgres.url();
    let mut args = vec![
        "consumer-high",
        "--kafka-brokers",
        brokers,
        "--postgres-url",
        &url,
        "--batch-max-age",
        "20ms",
        "--retry-max",
        "500ms",
    ];
    args.extend_from_slice(extra);
    let config = consumer_high::Config::try_parse_from(args).unwrap();
    InProcess::spawn(|listener, shutdown| consumer_high::run(config, listener, shutdown)).await
}

/// `select count(*)`-like answers as numbers; -1 when PostgreSQL does not answer.
fn count(postgres: &Postgres, sql: &str) -> i64 {
    postgres
        .psql(sql)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(-1)
}

fn rows(postgres: &Postgres) -> i64 {
    count(postgres, "select count(*) from events")
}

/// Waits until `events` holds `expected` rows and the consumers have
/// committed all `records` of the topic (they commit only after writing:
/// nothing is left to arrive late), then checks the count is exactly that
/// (nothing late, nothing doubled) and every id is unique.
async fn assert_rows_settle_at(postgres: &Postgres, expected: i64, broker: &Tansu, records: usize) {
    let reached = eventually(Duration::from_secs(60), || async {
        rows(postgres) >= expected
    })
    .await;
    assert!(
        reached,
        "only {} of {expected} rows arrived",
        rows(postgres)
    );
    let committed = broker
        .wait_committed(GROUP, TOPIC, records, Duration::from_secs(60))
        .await;
    assert!(committed, "the {records} records were not all committed");
    assert_eq!(rows(postgres), expected, "rows after settling");
    let distinct = postgres
        .psql("select count(distinct id) from events")
        .unwrap();
    assert_eq!(distinct, expected.to_string(), "one row per event id");
    assert_eq!(
        postgres.psql(ROLLUP_MISMATCHES).unwrap(),
        "0",
        "events_per_second agrees with events"
    );
    assert_eq!(
        postgres.psql(HOUR_MISMATCHES).unwrap(),
        "0",
        "events_per_hour agrees with events"
    );
}

/// Seconds where the per-second totals differ from the stored events.
const ROLLUP_MISMATCHES: &str = "
select count(*) from (
    select floor(extract(epoch from time))::bigint as second,
           count(*) as events, sum(amount) as amount_sum,
           min(amount) as amount_min, max(amount) as amount_max
    from events group by 1
) as stored
full join events_per_second as total using (second)
where total.events is distinct from stored.events
   or total.amount_min is distinct from stored.amount_min
   or total.amount_max is distinct from stored.amount_max
   or abs(total.amount_sum - stored.amount_sum) > 1e-6
   or total.amount_sum is null or stored.amount_sum is null";

/// Hours where the per-hour totals differ from the stored events.
const HOUR_MISMATCHES: &str = "
select count(*) from (
    select floor(extract(epoch from time) / 3600)::bigint as hour,
           count(*) as events, sum(amount) as amount_sum,
           min(amount) as amount_min, max(amount) as amount_max
    from events group by 1
) as stored
full join events_per_hour as total using (hour)
where total.events is distinct from stored.events
   or total.amount_min is distinct from stored.amount_min
   or total.amount_max is distinct from stored.amount_max
   or abs(total.amount_sum - stored.amount_sum) > 1e-6
   or total.amount_sum is null or stored.amount_sum is null";

fn high_events(prefix: &str, n: usize) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .map(|i| {
            event_record(
                &format!("{prefix}-{i}"),
                1_700_000_000_000 + i as i64,
                5.5 + (i % 4) as f64,
            )
        })
        .collect()
}

#[tokio::test]
async fn stores_exactly_the_high_events_once_each() {
    let broker = Tansu::start();
    broker.create_topic(TOPIC, 3).await;
    let postgres = Postgres::start();

    let boundary = 5.0_f64;
    let mut records = vec![
        event_record("at-watermark", 1_700_000_000_000, boundary),
        event_record("just-above", 1_700_000_000_001, boundary.next_up()),
        event_record("low", 1_700_000_000_002, 0.5),
    ];
    records.extend(high_events("high", 100));
    // Kafka holds some events twice: a redelivered record, and a record
    // that reuses an id with another time (event-api refuses an id without
    // a time, but anyone may write to the topic).
    records.extend(high_events("high", 10));
    records.push(event_record("high-3", 1_750_000_000_000, 8.5));
    produce(&broker.brokers(), TOPIC, &records).await;

    let consumer = start(&broker.brokers(), &postgres, &[]).await;
    assert_rows_settle_at(&postgres, 101, &broker, records.len()).await;
    let stored = postgres
        .psql("select string_agg(id, ',') from events where id not like 'high-%'")
        .unwrap();
    assert_eq!(
        stored, "just-above",
        "5.0 goes low, the next float above it high"
    );
    let hypertable = postgres
        .psql("select count(*) from timescaledb_information.hypertables where hypertable_name = 'events'")
        .unwrap();
    assert_eq!(hypertable, "1");
    assert_eq!(
        consumer.metric("events_consumed_total").await,
        records.len() as f64
    );
    consumer.stop().await;
}

#[tokio::test]
async fn runs_on_a_plain_table_without_timescaledb() {
    let broker = Tansu::start();
    broker.create_topic(TOPIC, 1).await;
    let postgres = Postgres::start_without_timescale();
    produce(&broker.brokers(), TOPIC, &high_events("plain", 30)).await;

    let consumer = start(&broker.brokers(), &postgres, &[]).await;
    assert_rows_settle_at(&postgres, 30, &broker, 30).await;
    let extension =
        postgres.psql("select count(*) from pg_extension where extname = 'timescaledb'");
    assert_eq!(extension.unwrap(), "0");
    let index =
        postgres.psql("select count(*) from pg_indexes where indexname = 'events_time_idx'");
    assert_eq!(index.unwrap(), "1", "the plain table gets its time index");
    consumer.stop().await;
}

#[tokio::test]
async fn waits_out_a_database_outage_and_catches_up_exactly() {
    let broker = Tansu::start();
    broker.create_topic(TOPIC, 2).await;
    let postgres = Postgres::start();
    let consumer = start(&broker.brokers(), &postgres, &[]).await;

    produce(&broker.brokers(), TOPIC, &high_events("before", 50)).await;
    assert_rows_settle_at(&postgres, 50, &broker, 50).await;

    postgres.stop();
    produce(&broker.brokers(), TOPIC, &high_events("during", 200)).await;
    let retried = eventually(Duration::from_secs(20), || async {
        consumer.metric("sink_write_failures_total").await >= 2.0
    })
    .await;
    assert!(
        retried,
        "the consumer should retry while PostgreSQL is down"
    );
    let readyz = consumer.get("/readyz").await;
    assert_eq!(readyz.status(), 503);

    postgres.restart();
    assert_rows_settle_at(&postgres, 250, &broker, 250).await;
    consumer.stop().await;
}

#[tokio::test]
async fn two_instances_split_the_partitions_and_store_each_event_once() {
    let broker = Tansu::start();
    broker.create_topic(TOPIC, 4).await;
    let postgres = Postgres::start();
    let a = start(&broker.brokers(), &postgres, &[]).await;
    let b = start(&broker.brokers(), &postgres, &[]).await;

    let produced = produce_until_all_busy(&broker.brokers(), TOPIC, &[&a, &b], |n| {
        high_events(&format!("round{n}"), 40)
    })
    .await;
    assert_rows_settle_at(&postgres, produced as i64 * 40, &broker, produced * 40).await;
    a.stop().await;
    b.stop().await;
}

/// `n` events every 7 min 13.7 s from `start_ms` (about six days for 1 200),
/// so batches span many hours and days.
fn spread_events(prefix: &str, start_ms: i64, n: usize) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .map(|i| {
            event_record(
                &format!("{prefix}-{i}"),
                start_ms + i as i64 * 433_700,
                5.25 + (i % 7) as f64,
            )
        })
        .collect()
}

/// Two instances write events spread over days, every one of them
/// delivered twice (the second time in other batches, maybe to the other
/// instance): the hour totals count each stored event once, hour by hour.
#[tokio::test]
async fn hour_totals_stay_exact_over_days_with_two_instances_and_redeliveries() {
    let broker = Tansu::start();
    broker.create_topic(TOPIC, 4).await;
    let postgres = Postgres::start();
    let a = start(&broker.brokers(), &postgres, &[]).await;
    let b = start(&broker.brokers(), &postgres, &[]).await;

    let events = spread_events("spread", 1_700_000_000_000, 1_200);
    produce(&broker.brokers(), TOPIC, &events).await;
    let mut again = events.clone();
    again.reverse();
    produce(&broker.brokers(), TOPIC, &again).await;
    assert_rows_settle_at(&postgres, 1_200, &broker, 2 * events.len()).await;
    let hours = count(&postgres, "select count(*) from events_per_hour");
    assert!(hours > 100, "the events span {hours} hours: use more");
    assert_eq!(
        count(&postgres, "select sum(events) from events_per_hour"),
        1_200
    );
    a.stop().await;
    b.stop().await;
}

/// An installation that stored events before hour totals existed: the
/// migration adds them from the per-second totals, and writes that follow
/// add to them.
#[tokio::test]
async fn the_migration_computes_hour_totals_of_the_events_stored_before() {
    let broker = Tansu::start();
    broker.create_topic(TOPIC, 1).await;
    let postgres = Postgres::start();
    let consumer = start(&broker.brokers(), &postgres, &[]).await;
    produce(
        &broker.brokers(),
        TOPIC,
        &spread_events("before", 1_700_000_000_000, 100),
    )
    .await;
    assert_rows_settle_at(&postgres, 100, &broker, 100).await;
    consumer.stop().await;
    // Back to the schema of the release before: no hour totals, migration
    // 0003 not applied.
    postgres
        .psql("drop table events_per_hour; delete from _sqlx_migrations where version = 3")
        .unwrap();

    let consumer = start(&broker.brokers(), &postgres, &[]).await;
    produce(
        &broker.brokers(),
        TOPIC,
        &spread_events("after", 1_700_000_000_000 + 3_600_000, 100),
    )
    .await;
    assert_rows_settle_at(&postgres, 200, &broker, 200).await;
    consumer.stop().await;
}

#[tokio::test]
async fn malformed_records_go_to_the_dead_letter_topic_and_the_rest_flows() {
    let broker = Tansu::start();
    broker.create_topic(TOPIC, 1).await;
    let postgres = Postgres::start();
    let mut records = vec![
        ("garbage".to_owned(), b"not json".to_vec()),
        (
            "no-amount".to_owned(),
            br#"{"id":"no-amount","time":1}"#.to_vec(),
        ),
        (
            "nan".to_owned(),
            br#"{"id":"nan","time":1,"amount":"NaN"}"#.to_vec(),
        ),
    ];
    records.extend(high_events("after", 20));
    produce(&broker.brokers(), TOPIC, &records).await;

    let consumer = start(&broker.brokers(), &postgres, &[]).await;
    assert_rows_settle_at(&postgres, 20, &broker, records.len()).await;
    let dead = consumer.dead_letters(&broker.brokers(), 3).await;
    let keys: Vec<_> = dead.iter().filter_map(|r| r.key.clone()).collect();
    assert_eq!(keys, ["garbage", "no-amount", "nan"]);
    assert_eq!(dead[0].payload, "not json", "the original bytes are kept");
    let reason = |r: &testkit::Record| r.reason().to_owned();
    assert!(
        reason(&dead[0]).contains("not valid JSON"),
        "{}",
        reason(&dead[0])
    );
    assert!(reason(&dead[1]).contains("missing field `amount`"));
    assert!(reason(&dead[2]).contains("amount"));
    assert_eq!(consumer.metric("events_dead_lettered_total").await, 3.0);
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

fn spawn_binary(brokers: &str, postgres: &Postgres, extra: &[&str]) -> Binary {
    let child = Command::new(env!("CARGO_BIN_EXE_consumer-high"))
        .args([
            "--port",
            "0",
            "--kafka-brokers",
            brokers,
            "--postgres-url",
            &postgres.url(),
        ])
        .args(["--batch-max-age", "20ms"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("consumer-high starts");
    Binary(child)
}

#[tokio::test]
async fn kill_9_mid_stream_then_restart_loses_and_doubles_nothing() {
    let broker = Tansu::start();
    broker.create_topic(TOPIC, 3).await;
    let postgres = Postgres::start();
    let total = 5_000;
    produce(&broker.brokers(), TOPIC, &high_events("bulk", total)).await;

    // Small batches make the run long enough to interrupt.
    let mut child = spawn_binary(&broker.brokers(), &postgres, &["--batch-max-events", "10"]);
    let started = eventually(Duration::from_secs(60), || async { rows(&postgres) > 0 }).await;
    assert!(started, "no rows written before the kill");
    child.0.kill().unwrap(); // SIGKILL: no flush, no commit
    child.0.wait().unwrap();
    let at_kill = rows(&postgres);
    assert!(
        at_kill < total as i64,
        "the kill came after the end ({at_kill} rows); use more events"
    );

    let _restarted = spawn_binary(&broker.brokers(), &postgres, &[]);
    assert_rows_settle_at(&postgres, total as i64, &broker, total).await;
}

#[tokio::test]
async fn sigterm_writes_commits_and_exits_0() {
    let broker = Tansu::start();
    broker.create_topic(TOPIC, 2).await;
    let postgres = Postgres::start();
    let records = high_events("term", 300);
    produce(&broker.brokers(), TOPIC, &records).await;

    let mut child = spawn_binary(&broker.brokers(), &postgres, &[]);
    assert_rows_settle_at(&postgres, 300, &broker, records.len()).await;
    let status = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.0.wait().unwrap();
    assert!(exit.success(), "exit status {exit}");

    // The group's committed offsets cover every record.
    let group: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.brokers())
        .set("group.id", "streamproc-consumer-high")
        .create()
        .unwrap();
    let mut partitions = TopicPartitionList::new();
    for p in 0..2 {
        partitions
            .add_partition_offset(TOPIC, p, Offset::Invalid)
            .unwrap();
    }
    let committed = tokio::task::spawn_blocking(move || {
        group.committed_offsets(partitions, Duration::from_secs(10))
    })
    .await
    .unwrap()
    .unwrap();
    let sum: i64 = committed
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(n) => n,
            _ => 0,
        })
        .sum();
    assert_eq!(
        sum,
        records.len() as i64,
        "committed offsets cover every record"
    );
}

async fn rows_reach(postgres: &Postgres, expected: i64) -> bool {
    eventually(Duration::from_secs(30), || async {
        rows(postgres) >= expected
    })
    .await
}

/// The schema exists once the consumer answered its first readiness probe.
async fn ready(consumer: &InProcess) {
    let ready = eventually(Duration::from_secs(30), || async {
        consumer.get("/readyz").await.status().is_success()
    })
    .await;
    assert!(ready, "consumer-high never became ready");
}

const SECOND: i64 = 1_700_000_000_000;

#[tokio::test]
async fn only_the_refused_events_are_dead_lettered_and_the_rest_are_stored() {
    let broker = Tansu::start();
    broker.create_topic(TOPIC, 1).await;
    let postgres = Postgres::start();
    let consumer = start(&broker.brokers(), &postgres, &[]).await;
    ready(&consumer).await;
    // A rule of the store that the event model does not know: PostgreSQL
    // refuses these rows with a constraint violation (SQLSTATE 23514).
    postgres
        .psql("alter table events add constraint store_refuses_13 check (amount <> 13)")
        .unwrap();

    // One batch: 30 good events, two the store refuses, and two whose
    // amounts would overflow the per-second sum (refused by the bounds).
    let mut records: Vec<_> = (0..30)
        .map(|i| event_record(&format!("good-{i}"), SECOND + i, 6.0 + (i % 3) as f64))
        .collect();
    records.insert(7, event_record("refused-a", SECOND + 7, 13.0));
    records.insert(22, event_record("refused-b", SECOND + 22, 13.0));
    records.push(event_record("huge-a", SECOND, 1.7e308));
    records.push(event_record("huge-b", SECOND, 1.7e308));
    produce(&broker.brokers(), TOPIC, &records).await;

    assert!(rows_reach(&postgres, 30).await, "the good events arrive");
    let dead = consumer.dead_letters(&broker.brokers(), 4).await;
    let mut keys: Vec<_> = dead.iter().filter_map(|r| r.key.clone()).collect();
    keys.sort();
    assert_eq!(keys, ["huge-a", "huge-b", "refused-a", "refused-b"]);
    for record in &dead {
        let reason = record.reason();
        if record
            .key
            .as_deref()
            .unwrap_or_default()
            .starts_with("refused")
        {
            assert!(
                reason.contains("rejected by the store") && reason.contains("store_refuses_13"),
                "{reason}"
            );
        } else {
            assert!(reason.contains("EVENT_MAX_AMOUNT"), "{reason}");
        }
    }
    assert!(consumer.metric("sink_write_rejections_total").await >= 2.0);

    // The partition moves on: an event sent after them is stored.
    produce(
        &broker.brokers(),
        TOPIC,
        &[event_record("after", SECOND + 100, 7.0)],
    )
    .await;
    assert!(rows_reach(&postgres, 31).await, "the next event is stored");
    assert_eq!(
        count(
            &postgres,
            "select count(*) from events where id like 'refused%' or id like 'huge%'"
        ),
        0
    );
    assert_eq!(
        count(
            &postgres,
            "select events from events_per_second where second = 1700000000"
        ),
        31,
        "the totals count exactly the stored events"
    );
    assert_eq!(
        count(
            &postgres,
            "select events from events_per_hour where hour = 1700000000 / 3600"
        ),
        31,
        "so do the hour totals"
    );
    assert!(consumer.get("/readyz").await.status().is_success());
    consumer.stop().await;
}

#[tokio::test]
async fn a_write_that_keeps_failing_turns_readiness_red_until_it_succeeds() {
    let broker = Tansu::start();
    broker.create_topic(TOPIC, 1).await;
    let postgres = Postgres::start();
    let consumer = start(&broker.brokers(), &postgres, &["--stall-after", "1s"]).await;
    ready(&consumer).await;
    // The server answers, but every insert fails as if the disk were full
    // (SQLSTATE 53100): an outage, so the batch is retried, not dropped.
    postgres
        .psql(
            "create function disk_full() returns trigger language plpgsql as \
             $$ begin raise exception 'no space left' using errcode = '53100'; end $$; \
             create trigger disk_full before insert on event_ids \
             for each statement execute function disk_full()",
        )
        .unwrap();
    produce(
        &broker.brokers(),
        TOPIC,
        &[event_record("waits", SECOND, 7.0)],
    )
    .await;
    let stalled = eventually(Duration::from_secs(20), || async {
        let response = consumer.get("/readyz").await;
        !response.status().is_success() && response.text().await.unwrap().contains("stalled")
    })
    .await;
    assert!(stalled, "readiness reports the stall");
    // The gauge moves with each failed try (every RETRY_MAX at most).
    let gauge = eventually(Duration::from_secs(5), || async {
        consumer.metric("consumer_stalled_seconds").await >= 1.0
    })
    .await;
    assert!(gauge, "consumer_stalled_seconds counts the stall");

    postgres
        .psql("drop trigger disk_full on event_ids")
        .unwrap();
    assert!(
        rows_reach(&postgres, 1).await,
        "the batch is stored after all"
    );
    let green = eventually(Duration::from_secs(10), || async {
        consumer.get("/readyz").await.status().is_success()
    })
    .await;
    assert!(green, "readiness recovers");
    assert_eq!(consumer.metric("consumer_stalled_seconds").await, 0.0);
    consumer.stop().await;
}
