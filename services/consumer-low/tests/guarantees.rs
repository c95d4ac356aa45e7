//! consumer-low against a real tansu broker and a real InfluxDB 1.x: the
//! promises both consumers make (testkit's shared suite), then InfluxDB's
//! own: per-second and per-hour totals left dirty or never computed are
//! computed at start, two instances writing the same hours over days keep
//! them exact; and, with consumer-high beside it, every event lands in
//! exactly one store.

use std::time::Duration;

use clap::Parser;
use serde_json::Value;
use streamproc_event::names::{CONSUMER_LOW, DEAD_LETTER_TOPIC, EVENTS_TOPIC};
use streamproc_event::Route;
use streamproc_kafka::consume::rebuild::RebuildSummary;
use testkit::guarantees::{assert_settles_at, start_consumer, StoreUnderTest, TopicRecord};
use testkit::{
    event_record, eventually, produce, produce_until_all_busy, InProcess, InfluxDb, Postgres, Tansu,
};
use tokio_util::sync::CancellationToken;

/// InfluxDB 1.x, as consumer-low writes it.
struct Influx(InfluxDb);

/// A week (one InfluxDB shard group) where the field `id` is an integer
/// before consumer-low writes, so InfluxDB refuses its string ids there.
const CONFLICTING_WEEK_MS: i64 = 1_700_000_000_000;

impl StoreUnderTest for Influx {
    const ROUTE: Route = Route::Low;
    const SERVICE: &'static str = CONSUMER_LOW;
    const BINARY: &'static str = env!("CARGO_BIN_EXE_consumer-low");
    const REFUSAL: &'static str = "conflict";

    fn start() -> Self {
        Self(InfluxDb::start())
    }

    fn flags(&self) -> Vec<String> {
        vec!["--influxdb-host".to_owned(), self.0.url()]
    }

    fn flags_to_nowhere() -> Vec<String> {
        let url = format!("http://127.0.0.1:{}", testkit::free_port());
        vec!["--influxdb-host".to_owned(), url]
    }

    async fn run(args: Vec<String>) -> InProcess {
        let config = consumer_low::Config::try_parse_from(args).unwrap();
        InProcess::spawn(|listener, shutdown| consumer_low::run(config, listener, shutdown)).await
    }

    fn stop(&mut self) {
        self.0.stop();
    }

    fn restart(&mut self) {
        self.0.restart();
    }

    async fn stored(&self) -> i64 {
        count(&self.0, "SELECT count(amount) FROM event").await
    }

    async fn distinct_ids(&self) -> i64 {
        // The cast keeps the count to string ids: the refusal test writes an
        // integer `id`, and a field of two types matches no filter.
        count(&self.0, "SELECT count(distinct(id::string)) FROM event").await
    }

    async fn holds(&self, id: &str) -> bool {
        let query = format!("SELECT count(amount) FROM event WHERE id = '{id}'");
        count(&self.0, &query).await == 1
    }

    async fn assert_consistent(&self) {
        assert_rollups_agree(&self.0).await;
        let field_type = self
            .0
            .query("streamproc", "SHOW FIELD KEYS FROM event")
            .await;
        assert!(
            field_type.to_string().contains(r#"["amount","float"]"#),
            "{field_type}"
        );
    }

    async fn refused_events(&self) -> Vec<TopicRecord> {
        let written = reqwest::Client::new()
            .post(format!("{}/write?db=streamproc&precision=ms", self.0.url()))
            .body(format!("event,shard=0 id=1i {CONFLICTING_WEEK_MS}"))
            .send()
            .await
            .unwrap();
        assert!(written.status().is_success());
        vec![event_record("refused", CONFLICTING_WEEK_MS + 500, 2.5)]
    }

    async fn seconds(&self) -> Vec<(i64, i64, f64)> {
        let answer = self
            .0
            .query(
                "streamproc",
                "SELECT count, sum FROM event_1s WHERE time >= 0 AND count > 0",
            )
            .await;
        answer["results"][0]["series"][0]["values"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|row| {
                let second = row[0].as_str().map_or(0, |t| {
                    humantime::parse_rfc3339(t)
                        .unwrap()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_secs() as i64
                });
                (second, row[1].as_i64().unwrap(), row[2].as_f64().unwrap())
            })
            .collect()
    }

    async fn wipe(&self) {
        self.0.query("streamproc", "DROP DATABASE streamproc").await;
    }

    async fn rebuild(args: Vec<String>) -> anyhow::Result<RebuildSummary> {
        let config = consumer_low::Config::try_parse_from(args).unwrap();
        let from = config.consumer.rebuild_from.expect("--rebuild-from");
        consumer_low::rebuild(config, from, CancellationToken::new()).await
    }
}

testkit::consumer_guarantees!(Influx);

/// The first value of an InfluxQL answer as a number; 0 when there is none.
async fn count(influx: &InfluxDb, query: &str) -> i64 {
    influx.query("streamproc", query).await["results"][0]["series"][0]["values"][0][1]
        .as_i64()
        .unwrap_or(0)
}

/// `(bucket, count, sum, min, max)` per `width` ("1s", "1h"): from the
/// stored events, and from the totals in `measurement`.
async fn per_bucket(influx: &InfluxDb, width: &str, measurement: &str) -> (Vec<Value>, Vec<Value>) {
    let values = |answer: Value| answer["results"][0]["series"][0]["values"].clone();
    let events = influx
        .query(
            "streamproc",
            &format!(
                "SELECT count(amount), sum(amount), min(amount), max(amount) FROM event \
                 WHERE time >= 0 AND time < 4000000000000000000 GROUP BY time({width}) fill(none)"
            ),
        )
        .await;
    let totals = influx
        .query(
            "streamproc",
            &format!("SELECT count, sum, min, max FROM {measurement} WHERE count > 0"),
        )
        .await;
    let rows = |v: Value| v.as_array().cloned().unwrap_or_default();
    (rows(values(events)), rows(values(totals)))
}

async fn per_second(influx: &InfluxDb) -> (Vec<Value>, Vec<Value>) {
    per_bucket(influx, "1s", "event_1s").await
}

async fn per_hour(influx: &InfluxDb) -> (Vec<Value>, Vec<Value>) {
    per_bucket(influx, "1h", "event_1h").await
}

/// Buckets whose totals are dirty (`dirty <> clean`) in `measurement`.
async fn dirty(influx: &InfluxDb, measurement: &str) -> i64 {
    count(
        influx,
        &format!("SELECT count(dirty) FROM {measurement} WHERE dirty <> clean"),
    )
    .await
}

/// The per-second and per-hour totals match the stored events, bucket by
/// bucket: times and counts exactly, sums to the last bits (InfluxDB adds
/// in no fixed order); and once they do, no bucket is left dirty.
async fn assert_rollups_agree(influx: &InfluxDb) {
    let close = |a: &Value, b: &Value| match (a.as_f64(), b.as_f64()) {
        (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * a.abs().max(1.0),
        _ => a == b,
    };
    let agree = |events: &[Value], totals: &[Value]| {
        !events.is_empty()
            && events.len() == totals.len()
            && events.iter().zip(totals).all(|(e, t)| {
                let (e, t) = (e.as_array().unwrap(), t.as_array().unwrap());
                e.len() == t.len() && e.iter().zip(t).all(|(a, b)| close(a, b))
            })
    };
    let agreed = eventually(Duration::from_secs(20), || async {
        let (events, totals) = per_second(influx).await;
        agree(&events, &totals)
    })
    .await;
    let (events, totals) = per_second(influx).await;
    assert!(
        agreed,
        "per-second totals differ:\nevents {events:?}\ntotals {totals:?}"
    );
    let agreed = eventually(Duration::from_secs(20), || async {
        let (events, totals) = per_hour(influx).await;
        agree(&events, &totals)
            && dirty(influx, "event_1s").await == 0
            && dirty(influx, "event_1h").await == 0
    })
    .await;
    let (events, totals) = per_hour(influx).await;
    assert!(
        agreed,
        "per-hour totals differ or stay dirty ({} seconds, {} hours):\nevents {events:?}\ntotals {totals:?}",
        dirty(influx, "event_1s").await,
        dirty(influx, "event_1h").await,
    );
}

/// Stores `(id, time in ms, amount)` events as consumer-low's sink does,
/// seconds marked dirty, as an instance that crashes before refreshing any
/// totals leaves them.
async fn write_and_crash(influx: &InfluxDb, events: impl Iterator<Item = (String, i64, f64)>) {
    use streamproc_event::{Amount, Event, EventId, EventTime};
    use streamproc_kafka::consume::Sink;

    let config =
        consumer_low::Config::try_parse_from(["t", "--influxdb-host", &influx.url()]).unwrap();
    let crashed = consumer_low::InfluxSink::new(config.influx).unwrap();
    let events: Vec<Event> = events
        .map(|(id, ms, amount)| {
            Event::new(
                EventId::parse(&id).unwrap(),
                EventTime::from_millis(ms).unwrap(),
                Amount::new(amount).unwrap(),
            )
        })
        .collect();
    for batch in events.chunks(6_000) {
        let logged = testkit::logged(0, batch.to_vec());
        crashed.write(&logged).await.unwrap();
    }
}

/// A crash between storing events and refreshing their seconds' totals
/// leaves those seconds marked dirty; the next consumer-low to start
/// refreshes them, whatever it consumes itself, and computes the totals of
/// events stored before totals were kept.
#[tokio::test]
async fn totals_left_dirty_or_never_computed_are_computed_at_start() {
    let broker = Tansu::start();
    broker.create_topic(EVENTS_TOPIC, 1).await;
    let store = Influx::start();
    let influx = &store.0;
    let events = (0..50).map(|i| {
        (
            format!("left-{i}"),
            1_700_000_000_000 + i * 137,
            i as f64 / 10.0,
        )
    });
    write_and_crash(influx, events).await;
    // And events an older consumer-low stored, without marks: a day earlier.
    let older: String = (0..20)
        .map(|i| {
            let ns = (1_699_900_000_000_i64 + i * 250) * 1_000_000 + i;
            format!(
                "event,shard={i} amount={},id=\"old-{i}\" {ns}\n",
                i as f64 / 8.0
            )
        })
        .collect();
    let written = reqwest::Client::new()
        .post(format!("{}/write?db=streamproc", influx.url()))
        .body(older)
        .send()
        .await
        .unwrap();
    assert_eq!(written.status(), 204);
    // And the older events' hour left dirty with wrong totals, as by a
    // crash after its seconds were refreshed and before it was.
    let written = reqwest::Client::new()
        .post(format!("{}/write?db=streamproc&precision=s", influx.url()))
        .body("event_1h count=999i,sum=1,min=1,max=1,dirty=7i,clean=0i 1699898400")
        .send()
        .await
        .unwrap();
    assert_eq!(written.status(), 204);
    // And more dirty seconds than InfluxDB answers in one query (its row
    // limit), as a crash during a long catch-up leaves them (their events
    // are gone: a retention policy, say).
    let marks: String = (0..12_000)
        .map(|i| format!("event_1s dirty=3i,clean=0i {}\n", 1_690_000_000 + i))
        .collect();
    let written = reqwest::Client::new()
        .post(format!("{}/write?db=streamproc&precision=s", influx.url()))
        .body(marks)
        .send()
        .await
        .unwrap();
    assert_eq!(written.status(), 204);
    let (stored, totals) = per_second(influx).await;
    assert_eq!(
        (stored.len(), totals.len()),
        (12, 0),
        "stored, not yet totalled"
    );

    let consumer = start_consumer(&store, &broker, &[]).await;
    assert_rollups_agree(influx).await;
    consumer.stop().await;
}

/// Seconds are totalled from their amounts a page (10 000 points) at a
/// time: a page that ends inside a second reads that second again, and a
/// second that fills a page alone is totalled by InfluxDB. Left dirty by
/// a crashed instance, all of them are one run for the next instance.
#[tokio::test]
async fn seconds_holding_more_points_than_a_page_are_totalled_exactly() {
    let broker = Tansu::start();
    broker.create_topic(EVENTS_TOPIC, 1).await;
    let store = Influx::start();
    let influx = &store.0;
    // 12 000 events in the first second, then 4 000 in each of three: the
    // first page is all one second, the second ends in the middle of one.
    let events = (0..24_000_i64).map(|i| {
        let second = if i < 12_000 {
            0
        } else {
            1 + (i - 12_000) / 4_000
        };
        let ms = 1_700_200_000_000 + second * 1000 + i % 1000;
        (format!("dense-{i}"), ms, (i % 49) as f64 / 10.0)
    });
    write_and_crash(influx, events).await;
    assert_eq!(
        count(influx, "SELECT count(amount) FROM event").await,
        24_000
    );

    let consumer = start_consumer(&store, &broker, &[]).await;
    assert_rollups_agree(influx).await;
    let (_, seconds) = per_second(influx).await;
    let counts: Vec<_> = seconds.iter().map(|s| s[1].as_i64().unwrap()).collect();
    assert_eq!(counts, [12_000, 4_000, 4_000, 4_000]);
    consumer.stop().await;
}

/// An installation that kept per-second totals before per-hour totals
/// existed: the next consumer-low to start computes the hours from the
/// seconds.
#[tokio::test]
async fn hour_totals_are_computed_at_start_where_only_seconds_have_them() {
    let broker = Tansu::start();
    broker.create_topic(EVENTS_TOPIC, 2).await;
    let store = Influx::start();
    let influx = &store.0;
    let consumer = start_consumer(&store, &broker, &[]).await;
    produce(
        &broker.brokers(),
        EVENTS_TOPIC,
        &spread_events("before", 300),
    )
    .await;
    assert_settles_at(&store, 300, &broker, 300).await;
    consumer.stop().await;
    influx
        .query("streamproc", "DROP MEASUREMENT event_1h")
        .await;
    assert_eq!(per_hour(influx).await.1.len(), 0, "no hour totals");

    let consumer = start_consumer(&store, &broker, &[]).await;
    assert_rollups_agree(influx).await;
    consumer.stop().await;
}

/// `n` events every 7 min 13.7 s (about a day and a half for 300), so that
/// batches span many hours and several days.
fn spread_events(prefix: &str, n: usize) -> Vec<TopicRecord> {
    (0..n)
        .map(|i| {
            event_record(
                &format!("{prefix}-{i}"),
                1_700_000_000_000 + i as i64 * 433_700,
                (i % 5) as f64 + 0.5,
            )
        })
        .collect()
}

/// Two instances write events spread over days, in batches that touch the
/// same hours from different partitions, and every event is delivered
/// twice: per-second and per-hour totals count each stored event once.
#[tokio::test]
async fn two_instances_writing_the_same_hours_over_days_keep_hour_totals_exact() {
    let broker = Tansu::start();
    broker.create_topic(EVENTS_TOPIC, 4).await;
    let store = Influx::start();
    let influx = &store.0;
    let a = start_consumer(&store, &broker, &[]).await;
    let b = start_consumer(&store, &broker, &[]).await;

    let rounds = produce_until_all_busy(&broker.brokers(), EVENTS_TOPIC, &[&a, &b], |n| {
        // Each round's events interleave with the others' in time.
        (0..60)
            .map(|i| {
                event_record(
                    &format!("round{n}-{i}"),
                    1_700_000_000_000 + i * 4_337_000 + n as i64 * 1_000,
                    (i % 5) as f64 + 0.5,
                )
            })
            .collect()
    })
    .await;
    let events = spread_events("spread", 300);
    produce(&broker.brokers(), EVENTS_TOPIC, &events).await;
    produce(&broker.brokers(), EVENTS_TOPIC, &events).await;
    assert_settles_at(
        &store,
        rounds as i64 * 60 + 300,
        &broker,
        rounds * 60 + 2 * events.len(),
    )
    .await;
    let (_, hours) = per_hour(influx).await;
    assert!(
        hours.len() > 24,
        "{} hours: spread the events more",
        hours.len()
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn every_event_lands_in_exactly_one_store() {
    let broker = Tansu::start();
    broker.create_topic(EVENTS_TOPIC, 3).await;
    let store = Influx::start();
    let postgres = Postgres::start();
    let low = start_consumer(&store, &broker, &[]).await;
    let config = consumer_high::Config::try_parse_from([
        "consumer-high",
        "--kafka-brokers",
        &broker.brokers(),
        "--postgres-url",
        &postgres.url(),
        "--batch-max-age",
        "20ms",
    ])
    .unwrap();
    let high =
        InProcess::spawn(|listener, shutdown| consumer_high::run(config, listener, shutdown)).await;

    // Amounts 0.0, 0.1, … 9.9 twice over: 51 per hundred at or below 5.0.
    let records: Vec<_> = (0..1000)
        .map(|i| {
            event_record(
                &format!("e-{i}"),
                1_700_000_000_000 + i,
                (i % 100) as f64 / 10.0,
            )
        })
        .collect();
    let expected_low = records
        .iter()
        .filter(|(_, payload)| {
            let event: Value = serde_json::from_slice(payload).unwrap();
            event["amount"].as_f64().unwrap() <= 5.0
        })
        .count() as i64;
    // Both groups read every record; exactly one dead-letters each bad one.
    let malformed = testkit::guarantees::malformed_records();
    let mut records = records;
    records.extend(malformed.iter().map(|(record, ..)| record.clone()));
    produce(&broker.brokers(), EVENTS_TOPIC, &records).await;

    assert_settles_at(&store, expected_low, &broker, records.len()).await;
    let rows = || {
        postgres
            .psql("select count(*) from events")
            .ok()
            .and_then(|n| n.parse::<i64>().ok())
    };
    let high_done = eventually(Duration::from_secs(30), || async {
        rows() == Some(1000 - expected_low)
    })
    .await;
    assert!(
        high_done,
        "high rows: {:?}, expected {}",
        rows(),
        1000 - expected_low
    );
    let dead_lettered = || async {
        low.metric("events_dead_lettered_total").await
            + high.metric("events_dead_lettered_total").await
    };
    let counted = eventually(Duration::from_secs(30), || async {
        dead_lettered().await >= malformed.len() as f64
    })
    .await;
    assert!(counted, "dead letters counted: {}", dead_lettered().await);
    let dead = testkit::read_topic(
        &broker.brokers(),
        DEAD_LETTER_TOPIC,
        malformed.len(),
        Duration::from_secs(20),
        Duration::from_secs(1),
    )
    .await;
    let mut keys: Vec<_> = dead.iter().filter_map(|r| r.key.clone()).collect();
    keys.sort();
    let mut expected: Vec<_> = malformed.iter().map(|((key, _), ..)| key.clone()).collect();
    expected.sort();
    assert_eq!(keys, expected, "one dead letter per bad record");
    assert_eq!(dead_lettered().await, malformed.len() as f64);
    let consumed = records.len() as f64;
    assert_eq!(low.metric("events_consumed_total").await, consumed);
    assert_eq!(high.metric("events_consumed_total").await, consumed);
    low.stop().await;
    high.stop().await;
}
