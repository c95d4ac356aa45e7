//! Points InfluxDB refuses, against a real tansu broker and a real InfluxDB
//! 1.x: a partial write is not an outage; only the refused events are
//! dead-lettered, with InfluxDB's reason, and the rest are stored and
//! totalled.

use std::time::Duration;

use clap::Parser;
use testkit::{event_record, eventually, produce, read_topic, InProcess, InfluxDb, Record, Tansu};

const TOPIC: &str = "events";
/// A week (one InfluxDB shard group) where the field `id` is an integer
/// before consumer-low writes, so InfluxDB refuses its string ids there.
const CONFLICTING_WEEK_MS: i64 = 1_700_000_000_000;
const OTHER_WEEK_MS: i64 = 1_760_000_000_000;

async fn start(brokers: &str, influx: &InfluxDb) -> InProcess {
    let config = consumer_low::Config::try_parse_from([
        "consumer-low",
        "--kafka-brokers",
        brokers,
        "--influxdb-host",
        &influx.url(),
        "--batch-max-age",
        "200ms",
        "--retry-max",
        "500ms",
    ])
    .unwrap();
    InProcess::spawn(|listener, shutdown| consumer_low::run(config, listener, shutdown)).await
}

async fn count(influx: &InfluxDb, query: &str) -> i64 {
    influx.query("streamproc", query).await["results"][0]["series"][0]["values"][0][1]
        .as_i64()
        .unwrap_or(0)
}

fn reason(record: &Record) -> &str {
    record
        .headers
        .iter()
        .find(|(k, _)| k == "streamproc-reason")
        .map_or("", |(_, v)| v.as_str())
}

#[tokio::test]
async fn a_partial_write_dead_letters_only_the_refused_points() {
    let broker = Tansu::start();
    broker.create_topic(TOPIC, 1).await;
    let influx = InfluxDb::start();
    let consumer = start(&broker.brokers(), &influx).await;
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

    let dead_lettered = eventually(Duration::from_secs(30), || async {
        consumer.metric("events_dead_lettered_total").await >= 3.0
    })
    .await;
    assert!(dead_lettered, "three records are dead-lettered");
    let dead = read_topic(
        &broker.brokers(),
        "events.dlq",
        3,
        Duration::from_secs(30),
        Duration::from_millis(500),
    )
    .await;
    let mut keys: Vec<_> = dead.iter().filter_map(|r| r.key.clone()).collect();
    keys.sort();
    assert_eq!(keys, ["conflict", "huge-a", "huge-b"]);
    let conflict = dead
        .iter()
        .find(|r| r.key.as_deref() == Some("conflict"))
        .unwrap();
    assert!(
        reason(conflict).contains("rejected by the store") && reason(conflict).contains("conflict"),
        "{}",
        reason(conflict)
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
    })
    .await;
    assert!(totals, "the per-second totals count the stored events");
    assert!(consumer.metric("sink_write_rejections_total").await >= 1.0);
    consumer.stop().await;
}
