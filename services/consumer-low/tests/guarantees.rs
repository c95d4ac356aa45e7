//! consumer-low against a real tansu broker and a real InfluxDB 1.x: exact
//! routing, one point per event id, per-second and per-hour totals equal to
//! the stored events, an InfluxDB outage waited out, a partial write
//! isolated to the refused points; and, with
//! consumer-high beside it, every event in exactly one store.

use std::time::Duration;

use clap::Parser;
use serde_json::Value;
use testkit::{
    event_record, eventually, produce, produce_until_all_busy, InProcess, InfluxDb, Postgres, Tansu,
};

const TOPIC: &str = "events";
const GROUP: &str = "streamproc-consumer-low";

async fn start_low(brokers: &str, influx: &InfluxDb) -> InProcess {
    let config = consumer_low::Config::try_parse_from([
        "consumer-low",
        "--kafka-brokers",
        brokers,
        "--influxdb-host",
        &influx.url(),
        "--batch-max-age",
        "20ms",
        "--retry-max",
        "500ms",
    ])
    .unwrap();
    InProcess::spawn(|listener, shutdown| consumer_low::run(config, listener, shutdown)).await
}

async fn start_high(brokers: &str, postgres: &Postgres) -> InProcess {
    let config = consumer_high::Config::try_parse_from([
        "consumer-high",
        "--kafka-brokers",
        brokers,
        "--postgres-url",
        &postgres.url(),
        "--batch-max-age",
        "20ms",
    ])
    .unwrap();
    InProcess::spawn(|listener, shutdown| consumer_high::run(config, listener, shutdown)).await
}

async fn points(influx: &InfluxDb) -> i64 {
    let answer = influx
        .query("streamproc", "SELECT count(amount) FROM event")
        .await;
    answer["results"][0]["series"][0]["values"][0][1]
        .as_i64()
        .unwrap_or(0)
}

/// Waits until InfluxDB holds `expected` points and the consumers have
/// committed all `records` of the topic (they commit only after writing:
/// nothing is left to arrive late), then checks the count is exactly that
/// and the totals agree with the points.
async fn assert_points_settle_at(influx: &InfluxDb, expected: i64, broker: &Tansu, records: usize) {
    let reached = eventually(Duration::from_secs(60), || async {
        points(influx).await >= expected
    })
    .await;
    assert!(
        reached,
        "only {} of {expected} points arrived",
        points(influx).await
    );
    let committed = broker
        .wait_committed(GROUP, TOPIC, records, Duration::from_secs(60))
        .await;
    assert!(committed, "the {records} records were not all committed");
    assert_eq!(points(influx).await, expected, "points after settling");
    assert_rollups_agree(influx).await;
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

/// `n` low events named `<prefix>-<i>`, the i-th at `time_ms(i)`, with
/// amounts from `base_amount` to `base_amount + 4`.
fn low_events_at(
    prefix: &str,
    n: usize,
    time_ms: impl Fn(usize) -> i64,
    base_amount: f64,
) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .map(|i| {
            event_record(
                &format!("{prefix}-{i}"),
                time_ms(i),
                (i % 5) as f64 + base_amount,
            )
        })
        .collect()
}

/// Ten events per millisecond: distinct events in one millisecond must not
/// overwrite each other.
fn low_events(prefix: &str, n: usize) -> Vec<(String, Vec<u8>)> {
    low_events_at(prefix, n, |i| 1_700_000_000_000 + (i / 10) as i64, 0.25)
}

#[tokio::test]
async fn stores_exactly_the_low_events_once_each() {
    let broker = Tansu::start();
    broker.create_topic(TOPIC, 3).await;
    let influx = InfluxDb::start();

    let mut records = vec![
        event_record("at-watermark", 1_700_000_000_000, 5.0),
        event_record("just-above", 1_700_000_000_000, 5.0_f64.next_up()),
    ];
    records.extend(low_events("low", 300));
    // Redelivered records: the same ids, times and amounts again.
    records.extend(low_events("low", 30));
    produce(&broker.brokers(), TOPIC, &records).await;

    let consumer = start_low(&broker.brokers(), &influx).await;
    assert_points_settle_at(&influx, 301, &broker, records.len()).await;
    let boundary = influx
        .query(
            "streamproc",
            "SELECT amount, id FROM event WHERE id = 'at-watermark' OR id = 'just-above'",
        )
        .await;
    let ids: Vec<&str> = boundary["results"][0]["series"][0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row[2].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["at-watermark"],
        "5.0 goes low, the next float above it high"
    );
    let field_type = influx
        .query("streamproc", "SHOW FIELD KEYS FROM event")
        .await;
    assert!(
        field_type.to_string().contains(r#"["amount","float"]"#),
        "{field_type}"
    );
    consumer.stop().await;
}

/// A crash between storing events and refreshing their seconds' totals
/// leaves those seconds marked dirty; the next consumer-low to start
/// refreshes them, whatever it consumes itself, and computes the totals of
/// events stored before totals were kept.
#[tokio::test]
async fn totals_left_dirty_or_never_computed_are_computed_at_start() {
    use streamproc_event::{Amount, Event, EventId, EventTime};
    use streamproc_kafka::consume::Sink;

    let broker = Tansu::start();
    broker.create_topic(TOPIC, 1).await;
    let influx = InfluxDb::start();
    let config =
        consumer_low::Config::try_parse_from(["t", "--influxdb-host", &influx.url()]).unwrap();
    let crashed = consumer_low::InfluxSink::new(config.influx).unwrap();
    let events: Vec<Event> = (0..50)
        .map(|i| {
            Event::new(
                EventId::parse(&format!("left-{i}")).unwrap(),
                EventTime::from_millis(1_700_000_000_000 + i * 137).unwrap(),
                Amount::new(i as f64 / 10.0).unwrap(),
            )
        })
        .collect();
    crashed.write(&events).await.unwrap();
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
    let (stored, totals) = per_second(&influx).await;
    assert_eq!(
        (stored.len(), totals.len()),
        (12, 0),
        "stored, not yet totalled"
    );

    let consumer = start_low(&broker.brokers(), &influx).await;
    assert_rollups_agree(&influx).await;
    consumer.stop().await;
}

/// An installation that kept per-second totals before per-hour totals
/// existed: the next consumer-low to start computes the hours from the
/// seconds.
#[tokio::test]
async fn hour_totals_are_computed_at_start_where_only_seconds_have_them() {
    let broker = Tansu::start();
    broker.create_topic(TOPIC, 2).await;
    let influx = InfluxDb::start();
    let consumer = start_low(&broker.brokers(), &influx).await;
    produce(&broker.brokers(), TOPIC, &spread_events("before", 300)).await;
    assert_points_settle_at(&influx, 300, &broker, 300).await;
    consumer.stop().await;
    influx
        .query("streamproc", "DROP MEASUREMENT event_1h")
        .await;
    assert_eq!(per_hour(&influx).await.1.len(), 0, "no hour totals");

    let consumer = start_low(&broker.brokers(), &influx).await;
    assert_rollups_agree(&influx).await;
    consumer.stop().await;
}

/// `n` events every 7 min 13.7 s (about a day and a half for 300), so that
/// batches span many hours and several days.
fn spread_events(prefix: &str, n: usize) -> Vec<(String, Vec<u8>)> {
    low_events_at(prefix, n, |i| 1_700_000_000_000 + i as i64 * 433_700, 0.5)
}

/// Two instances write events spread over days, in batches that touch the
/// same hours from different partitions, and every event is delivered
/// twice: per-second and per-hour totals count each stored event once.
#[tokio::test]
async fn two_instances_writing_the_same_hours_over_days_keep_hour_totals_exact() {
    let broker = Tansu::start();
    broker.create_topic(TOPIC, 4).await;
    let influx = InfluxDb::start();
    let a = start_low(&broker.brokers(), &influx).await;
    let b = start_low(&broker.brokers(), &influx).await;

    let rounds = produce_until_all_busy(&broker.brokers(), TOPIC, &[&a, &b], |n| {
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
    produce(&broker.brokers(), TOPIC, &events).await;
    produce(&broker.brokers(), TOPIC, &events).await;
    assert_points_settle_at(
        &influx,
        rounds as i64 * 60 + 300,
        &broker,
        rounds * 60 + 2 * events.len(),
    )
    .await;
    let (_, hours) = per_hour(&influx).await;
    assert!(
        hours.len() > 24,
        "{} hours: spread the events more",
        hours.len()
    );
    a.stop().await;
    b.stop().await;
}

/// Two instances write events of the same seconds from different
/// partitions, each refreshing those seconds' totals: the totals still
/// match the stored events exactly.
#[tokio::test]
async fn two_instances_writing_the_same_seconds_keep_the_totals_exact() {
    let broker = Tansu::start();
    broker.create_topic(TOPIC, 4).await;
    let influx = InfluxDb::start();
    let a = start_low(&broker.brokers(), &influx).await;
    let b = start_low(&broker.brokers(), &influx).await;

    // Every round's events fall in the same second.
    let rounds = produce_until_all_busy(&broker.brokers(), TOPIC, &[&a, &b], |n| {
        low_events(&format!("round{n}"), 40)
    })
    .await;
    assert_points_settle_at(&influx, rounds as i64 * 40, &broker, rounds * 40).await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn waits_out_an_influxdb_outage_and_catches_up_exactly() {
    let broker = Tansu::start();
    broker.create_topic(TOPIC, 2).await;
    let mut influx = InfluxDb::start();
    let consumer = start_low(&broker.brokers(), &influx).await;

    produce(&broker.brokers(), TOPIC, &low_events("before", 40)).await;
    assert_points_settle_at(&influx, 40, &broker, 40).await;

    influx.stop();
    produce(&broker.brokers(), TOPIC, &low_events("during", 160)).await;
    let retried = eventually(Duration::from_secs(20), || async {
        consumer.metric("sink_write_failures_total").await >= 2.0
    })
    .await;
    assert!(retried, "the consumer should retry while InfluxDB is down");
    let readyz = reqwest::get(format!("{}/readyz", consumer.url))
        .await
        .unwrap();
    assert_eq!(readyz.status(), 503);

    influx.restart();
    assert_points_settle_at(&influx, 200, &broker, 200).await;
    consumer.stop().await;
}

#[tokio::test]
async fn every_event_lands_in_exactly_one_store() {
    let broker = Tansu::start();
    broker.create_topic(TOPIC, 3).await;
    let influx = InfluxDb::start();
    let postgres = Postgres::start();
    let low = start_low(&broker.brokers(), &influx).await;
    let high = start_high(&broker.brokers(), &postgres).await;

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
    produce(&broker.brokers(), TOPIC, &records).await;

    assert_points_settle_at(&influx, expected_low, &broker, records.len()).await;
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
    assert_eq!(low.metric("events_consumed_total").await, 1000.0);
    assert_eq!(high.metric("events_consumed_total").await, 1000.0);
    low.stop().await;
    high.stop().await;
}

#[tokio::test]
async fn disabled_consumes_nothing_and_stays_ready() {
    // Neither a broker nor InfluxDB exists: a disabled consumer needs neither.
    let nowhere = |scheme: &str| format!("{scheme}127.0.0.1:{}", testkit::free_port());
    let config = consumer_low::Config::try_parse_from([
        "consumer-low",
        "-x",
        "--kafka-brokers",
        &nowhere(""),
        "--influxdb-host",
        &nowhere("http://"),
    ])
    .unwrap();
    let consumer =
        InProcess::spawn(|listener, shutdown| consumer_low::run(config, listener, shutdown)).await;
    assert_eq!(consumer.get("/readyz").await.status(), 200);
    assert_eq!(consumer.get("/").await.text().await.unwrap(), "ok");
    let metrics = consumer.get("/metrics").await.text().await.unwrap();
    assert!(
        !metrics.contains("events_consumed"),
        "no consume loop when disabled: {metrics}"
    );
    consumer.stop().await;
}

/// A week (one InfluxDB shard group) where the field `id` is an integer
/// before consumer-low writes, so InfluxDB refuses its string ids there.
const CONFLICTING_WEEK_MS: i64 = 1_700_000_000_000;
const OTHER_WEEK_MS: i64 = 1_760_000_000_000;

/// The first value of an InfluxQL answer as a number; 0 when there is none.
async fn count(influx: &InfluxDb, query: &str) -> i64 {
    influx.query("streamproc", query).await["results"][0]["series"][0]["values"][0][1]
        .as_i64()
        .unwrap_or(0)
}

#[tokio::test]
async fn a_partial_write_dead_letters_only_the_refused_points() {
    let broker = Tansu::start();
    broker.create_topic(TOPIC, 1).await;
    let influx = InfluxDb::start();
    let consumer = start_low(&broker.brokers(), &influx).await;
    let ready = eventually(Duration::from_secs(30), || async {
        consumer.get("/readyz").await.status().is_success()
    })
    .await;
    assert!(ready, "consumer-low never became ready");
    let written = reqwest::Client::new()
        .post(format!("{}/write?db=streamproc&precision=ms", influx.url()))
        .body(format!("event,shard=0 id=1i {CONFLICTING_WEEK_MS}"))
        .send()
        .await
        .unwrap();
    assert!(written.status().is_success());

    let mut records: Vec<_> = (0..20)
        .map(|i| event_record(&format!("good-{i}"), OTHER_WEEK_MS + i, 1.5))
        .collect();
    records.insert(9, event_record("conflict", CONFLICTING_WEEK_MS + 500, 2.5));
    records.push(event_record("huge-a", OTHER_WEEK_MS, -1.7e308));
    records.push(event_record("huge-b", OTHER_WEEK_MS, -1.7e308));
    produce(&broker.brokers(), TOPIC, &records).await;

    let dead = consumer.dead_letters(&broker.brokers(), 3).await;
    let mut keys: Vec<_> = dead.iter().filter_map(|r| r.key.clone()).collect();
    keys.sort();
    assert_eq!(keys, ["conflict", "huge-a", "huge-b"]);
    let conflict = dead
        .iter()
        .find(|r| r.key.as_deref() == Some("conflict"))
        .unwrap();
    assert!(
        conflict.reason().contains("rejected by the store")
            && conflict.reason().contains("conflict"),
        "{}",
        conflict.reason()
    );

    // The partition moves on, and the totals count exactly what is stored.
    produce(
        &broker.brokers(),
        TOPIC,
        &[event_record("after", OTHER_WEEK_MS + 100, 0.5)],
    )
    .await;
    let stored = eventually(Duration::from_secs(30), || async {
        count(&influx, "SELECT count(amount) FROM event").await == 21
    })
    .await;
    assert!(stored, "the good events and the next one are stored");
    let totals = eventually(Duration::from_secs(20), || async {
        count(&influx, "SELECT sum(count) FROM event_1s").await == 21
            && count(&influx, "SELECT sum(count) FROM event_1h").await == 21
    })
    .await;
    assert!(
        totals,
        "the per-second and per-hour totals count the stored events"
    );
    assert!(consumer.metric("sink_write_rejections_total").await >= 1.0);
    consumer.stop().await;
}
