//! Records the store refuses, against a real tansu broker and a real
//! PostgreSQL with TimescaleDB: only the refused records are dead-lettered,
//! with the store's reason, and everything around them is stored; a write
//! that keeps failing for another reason is reported by `/readyz`.

use std::time::Duration;

use clap::Parser;
use testkit::{event_record, eventually, produce, read_topic, InProcess, Postgres, Record, Tansu};

const TOPIC: &str = "events";
const SECOND: i64 = 1_700_000_000_000;

async fn start(brokers: &str, postgres: &Postgres, extra: &[&str]) -> InProcess {
    let url = postgres.url();
    let mut args = vec![
        "consumer-high",
        "--kafka-brokers",
        brokers,
        "--postgres-url",
        &url,
        "--batch-max-age",
        "200ms",
        "--retry-max",
        "500ms",
    ];
    args.extend_from_slice(extra);
    let config = consumer_high::Config::try_parse_from(args).unwrap();
    InProcess::spawn(|listener, shutdown| consumer_high::run(config, listener, shutdown)).await
}

fn count(postgres: &Postgres, sql: &str) -> i64 {
    postgres
        .psql(sql)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(-1)
}

async fn rows_reach(postgres: &Postgres, expected: i64) -> bool {
    eventually(Duration::from_secs(30), || async {
        count(postgres, "select count(*) from events") >= expected
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

fn reason(record: &Record) -> &str {
    record
        .headers
        .iter()
        .find(|(k, _)| k == "streamproc-reason")
        .map_or("", |(_, v)| v.as_str())
}

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
    let dead_lettered = eventually(Duration::from_secs(30), || async {
        consumer.metric("events_dead_lettered_total").await >= 4.0
    })
    .await;
    assert!(dead_lettered, "four records are dead-lettered");
    let dead = read_topic(
        &broker.brokers(),
        "events.dlq",
        4,
        Duration::from_secs(20),
        Duration::from_millis(500),
    )
    .await;
    let mut keys: Vec<_> = dead.iter().filter_map(|r| r.key.clone()).collect();
    keys.sort();
    assert_eq!(keys, ["huge-a", "huge-b", "refused-a", "refused-b"]);
    for record in &dead {
        let reason = reason(record);
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
