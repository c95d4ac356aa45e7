//! consumer-high against a real tansu broker and a real PostgreSQL with
//! TimescaleDB: the promises both consumers make (testkit's shared suite),
//! then TimescaleDB's own: the plain-table fallback, hour totals exact over
//! days and computed by the migration, an id reused with another time, and a
//! write that keeps failing reported by `/readyz`.

use std::time::Duration;

use clap::Parser;
use streamproc_event::names::{CONSUMER_HIGH, EVENTS_TOPIC};
use streamproc_event::Route;
use streamproc_kafka::consume::rebuild::RebuildSummary;
use testkit::guarantees::{assert_settles_at, start_consumer, StoreUnderTest, TopicRecord};
use testkit::{event_record, eventually, produce, InProcess, Postgres, Tansu};
use tokio_util::sync::CancellationToken;

/// PostgreSQL with TimescaleDB (or without), as consumer-high writes it.
struct Timescale(Postgres);

impl Timescale {
    /// A number from a `select count(*)`-like query; -1 when PostgreSQL
    /// does not answer. Async: the consumer runs on the test's runtime.
    async fn count(&self, sql: &str) -> i64 {
        self.0
            .query(sql)
            .await
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(-1)
    }
}

impl StoreUnderTest for Timescale {
    const ROUTE: Route = Route::High;
    const SERVICE: &'static str = CONSUMER_HIGH;
    const BINARY: &'static str = env!("CARGO_BIN_EXE_consumer-high");
    const REFUSAL: &'static str = "store_refuses_13";

    fn start() -> Self {
        Self(Postgres::start())
    }

    fn flags(&self) -> Vec<String> {
        vec!["--postgres-url".to_owned(), self.0.url()]
    }

    fn flags_to_nowhere() -> Vec<String> {
        let url = format!("postgres://postgres@127.0.0.1:{}/x", testkit::free_port());
        vec!["--postgres-url".to_owned(), url]
    }

    async fn run(args: Vec<String>) -> InProcess {
        let config = consumer_high::Config::try_parse_from(args).unwrap();
        InProcess::spawn(|listener, shutdown| consumer_high::run(config, listener, shutdown)).await
    }

    fn stop(&mut self) {
        self.0.stop();
    }

    fn restart(&mut self) {
        self.0.restart();
    }

    async fn stored(&self) -> i64 {
        self.count("select count(*) from events").await
    }

    async fn distinct_ids(&self) -> i64 {
        self.count("select count(distinct id) from events").await
    }

    async fn holds(&self, id: &str) -> bool {
        self.count(&format!("select count(*) from events where id = '{id}'"))
            .await
            == 1
    }

    async fn assert_consistent(&self) {
        assert_eq!(
            self.count(SECOND_MISMATCHES).await,
            0,
            "per-second totals agree"
        );
        assert_eq!(
            self.count(HOUR_MISMATCHES).await,
            0,
            "per-hour totals agree"
        );
        if self
            .count("select count(*) from pg_extension where extname = 'timescaledb'")
            .await
            == 1
        {
            assert_eq!(
                self.count(
                    "select count(*) from timescaledb_information.hypertables \
                     where hypertable_name = 'events'"
                )
                .await,
                1,
                "events is a hypertable"
            );
        }
    }

    async fn refused_events(&self) -> Vec<TopicRecord> {
        // A rule of the store that the event model does not know: PostgreSQL
        // refuses these rows with a constraint violation (SQLSTATE 23514).
        self.0
            .query("alter table events add constraint store_refuses_13 check (amount <> 13)")
            .await
            .unwrap();
        vec![
            event_record("refused-a", 1_760_000_000_007, 13.0),
            event_record("refused-b", 1_760_000_000_022, 13.0),
        ]
    }

    async fn seconds(&self) -> Vec<(i64, i64, f64)> {
        let rows = self
            .0
            .query("select second || ',' || events || ',' || amount_sum from events_per_second order by 1").await
            .unwrap();
        rows.lines()
            .map(|row| {
                let fields: Vec<&str> = row.split(',').collect();
                (
                    fields[0].parse().unwrap(),
                    fields[1].parse().unwrap(),
                    fields[2].parse().unwrap(),
                )
            })
            .collect()
    }

    async fn wipe(&self) {
        self.0
            .query("truncate events, event_ids, events_per_second, events_per_hour")
            .await
            .unwrap();
    }

    async fn rebuild(args: Vec<String>) -> anyhow::Result<RebuildSummary> {
        let config = consumer_high::Config::try_parse_from(args).unwrap();
        let from = config.consumer.rebuild_from.expect("--rebuild-from");
        consumer_high::rebuild(config, from, CancellationToken::new()).await
    }
}

testkit::consumer_guarantees!(Timescale);

/// Seconds where the per-second totals differ from the stored events.
const SECOND_MISMATCHES: &str = "
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

#[tokio::test]
async fn runs_on_a_plain_table_without_timescaledb() {
    let broker = Tansu::start();
    broker.create_topic(EVENTS_TOPIC, 1).await;
    let store = Timescale(Postgres::start_without_timescale());
    let records = spread_events("plain", 1_700_000_000_000, 30);
    produce(&broker.brokers(), EVENTS_TOPIC, &records).await;

    let consumer = start_consumer(&store, &broker, &[]).await;
    assert_settles_at(&store, 30, &broker, 30).await;
    assert_eq!(
        store
            .count("select count(*) from pg_extension where extname = 'timescaledb'")
            .await,
        0
    );
    assert_eq!(
        store
            .count("select count(*) from pg_indexes where indexname = 'events_time_idx'")
            .await,
        1,
        "the plain table gets its time index"
    );
    consumer.stop().await;
}

/// Kafka may hold a record that reuses an id with another time: event-api
/// refuses an id without a time, but anyone may write to the topic. The
/// id is stored once, as first written.
#[tokio::test]
async fn an_id_reused_with_another_time_is_stored_once() {
    let broker = Tansu::start();
    broker.create_topic(EVENTS_TOPIC, 1).await;
    let store = Timescale::start();
    let records = [
        event_record("reused", 1_700_000_000_000, 8.5),
        event_record("reused", 1_750_000_000_000, 9.5),
    ];
    produce(&broker.brokers(), EVENTS_TOPIC, &records).await;

    let consumer = start_consumer(&store, &broker, &[]).await;
    assert_settles_at(&store, 1, &broker, 2).await;
    assert_eq!(
        store.0.query("select amount from events").await.unwrap(),
        "8.5",
        "the first record of the id is the one stored"
    );
    consumer.stop().await;
}

/// `n` events every 7 min 13.7 s from `start_ms` (about six days for 1 200),
/// so batches span many hours and days.
fn spread_events(prefix: &str, start_ms: i64, n: usize) -> Vec<TopicRecord> {
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
    broker.create_topic(EVENTS_TOPIC, 4).await;
    let store = Timescale::start();
    let a = start_consumer(&store, &broker, &[]).await;
    let b = start_consumer(&store, &broker, &[]).await;

    let events = spread_events("spread", 1_700_000_000_000, 1_200);
    produce(&broker.brokers(), EVENTS_TOPIC, &events).await;
    let mut again = events.clone();
    again.reverse();
    produce(&broker.brokers(), EVENTS_TOPIC, &again).await;
    assert_settles_at(&store, 1_200, &broker, 2 * events.len()).await;
    let hours = store.count("select count(*) from events_per_hour").await;
    assert!(hours > 100, "the events span {hours} hours: use more");
    assert_eq!(
        store.count("select sum(events) from events_per_hour").await,
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
    broker.create_topic(EVENTS_TOPIC, 1).await;
    let store = Timescale::start();
    let consumer = start_consumer(&store, &broker, &[]).await;
    let before = spread_events("before", 1_700_000_000_000, 100);
    produce(&broker.brokers(), EVENTS_TOPIC, &before).await;
    assert_settles_at(&store, 100, &broker, 100).await;
    consumer.stop().await;
    // Back to the schema of the release before: no hour totals, migration
    // 0003 not applied.
    store
        .0
        .query("drop table events_per_hour; delete from _sqlx_migrations where version = 3")
        .await
        .unwrap();

    let consumer = start_consumer(&store, &broker, &[]).await;
    let after = spread_events("after", 1_700_000_000_000 + 3_600_000, 100);
    produce(&broker.brokers(), EVENTS_TOPIC, &after).await;
    assert_settles_at(&store, 200, &broker, 200).await;
    consumer.stop().await;
}

#[tokio::test]
async fn a_write_that_keeps_failing_turns_readiness_red_until_it_succeeds() {
    let broker = Tansu::start();
    broker.create_topic(EVENTS_TOPIC, 1).await;
    let store = Timescale::start();
    let consumer = start_consumer(&store, &broker, &["--stall-after", "1s"]).await;
    let ready = eventually(Duration::from_secs(30), || async {
        consumer.get("/readyz").await.status().is_success()
    })
    .await;
    assert!(ready, "consumer-high never became ready");
    // The server answers, but every insert fails as if the disk were full
    // (SQLSTATE 53100): an outage, so the batch is retried, not dropped.
    store
        .0
        .query(
            "create function disk_full() returns trigger language plpgsql as \
             $$ begin raise exception 'no space left' using errcode = '53100'; end $$; \
             create trigger disk_full before insert on event_ids \
             for each statement execute function disk_full()",
        )
        .await
        .unwrap();
    let waits = event_record("waits", 1_700_000_000_000, 7.0);
    produce(&broker.brokers(), EVENTS_TOPIC, &[waits]).await;
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

    store
        .0
        .query("drop trigger disk_full on event_ids")
        .await
        .unwrap();
    assert_settles_at(&store, 1, &broker, 1).await;
    let green = eventually(Duration::from_secs(10), || async {
        consumer.get("/readyz").await.status().is_success()
    })
    .await;
    assert!(green, "readiness recovers");
    assert_eq!(consumer.metric("consumer_stalled_seconds").await, 0.0);
    consumer.stop().await;
}
