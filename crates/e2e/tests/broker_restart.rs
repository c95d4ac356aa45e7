//! A broker restart under the running pipeline, while a client keeps
//! posting: event-api becomes ready again and accepts events, the consumers
//! go on from their committed offsets (not from the start of the topic),
//! their dead-letter producer still writes, and every record on the topic is
//! stored once, in one store. Nothing is restarted by hand but the broker.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use streamproc_event::names::DEAD_LETTER_TOPIC;
use testkit::{eventually, produce, read_topic, InProcess, InfluxDb, Postgres, Tansu};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

const TOPIC: &str = "events";
const PARTITIONS: i32 = 3;
const GROUP_HIGH: &str = "streamproc-consumer-high";
const GROUP_LOW: &str = "streamproc-consumer-low";

/// Event ids, by what event-api answered.
#[derive(Default)]
struct Sent {
    accepted: Vec<String>,
    refused: usize,
}

/// Posts one event every 20 ms, each with a new id, alternating between the
/// stores, until `stop`.
async fn keep_posting(url: String, sent: Arc<Mutex<Sent>>, stop: CancellationToken) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    for n in 0.. {
        if stop.is_cancelled() {
            break;
        }
        let id = format!("restart-{n}");
        let amount = if n % 2 == 0 { 7.5 } else { 2.5 };
        // An event with an id carries its time, so that a retry is the same event.
        let time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let answer = client
            .post(format!("{url}/v1/events"))
            .json(&json!([{"id": id, "time": time, "amount": amount}]))
            .send()
            .await;
        let mut sent = sent.lock().await;
        match answer {
            Ok(response) if response.status() == 200 => sent.accepted.push(id),
            _ => sent.refused += 1,
        }
        drop(sent);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn accepted(sent: &Mutex<Sent>) -> usize {
    sent.lock().await.accepted.len()
}

async fn ready(service: &InProcess) -> bool {
    service.get("/readyz").await.status() == 200
}

fn stored_high(postgres: &Postgres) -> Vec<String> {
    let ids = postgres
        .psql("select coalesce(string_agg(id, ',' order by id), '') from events")
        .unwrap_or_default();
    ids.split(',')
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .collect()
}

async fn stored_low(influx: &InfluxDb) -> Vec<String> {
    let answer = influx.query("streamproc", "SELECT id FROM event").await;
    answer["results"][0]["series"][0]["values"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .filter_map(|row| row[1].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

async fn stored_count(postgres: &Postgres, influx: &InfluxDb) -> usize {
    stored_high(postgres).len() + stored_low(influx).await.len()
}

#[tokio::test]
async fn a_broker_restart_under_load_heals_without_a_manual_step() {
    let mut broker = Tansu::start();
    broker.create_topic(TOPIC, PARTITIONS).await;
    let postgres = Postgres::start();
    let influx = InfluxDb::start();
    let brokers = broker.brokers();

    // The services' defaults: KAFKA_IDEMPOTENCE off, as against tansu.
    let event_api = common::start_event_api(&brokers, &["--kafka-delivery-timeout", "2s"]).await;
    let (high, low) = common::start_consumers(
        &brokers,
        &postgres,
        &influx,
        &["--batch-max-age", "20ms", "--retry-max", "500ms"],
    )
    .await;
    for service in [&event_api, &high, &low] {
        let up = eventually(Duration::from_secs(30), || ready(service)).await;
        assert!(up, "{} did not become ready", service.url);
    }

    let sent = Arc::new(Mutex::new(Sent::default()));
    let stop_posting = CancellationToken::new();
    let poster = tokio::spawn(keep_posting(
        event_api.url.clone(),
        sent.clone(),
        stop_posting.clone(),
    ));

    // Both consumers have stored (and so committed) some events.
    let flowing = eventually(Duration::from_secs(60), || async {
        accepted(&sent).await >= 40
            && !stored_high(&postgres).is_empty()
            && !stored_low(&influx).await.is_empty()
    })
    .await;
    assert!(
        flowing,
        "events did not reach both stores before the restart"
    );
    let committed_before = broker
        .committed_offsets(GROUP_HIGH, TOPIC, PARTITIONS)
        .await;
    assert!(
        committed_before.iter().sum::<i64>() > 0,
        "consumer-high committed nothing before the restart"
    );

    broker.stop();
    let readyz_noticed = eventually(Duration::from_secs(15), || async {
        !ready(&event_api).await
    })
    .await;
    assert!(readyz_noticed, "event-api stayed ready without a broker");
    let accepted_before = accepted(&sent).await;
    // The outage has been felt before the broker comes back: a POST was
    // refused during it, and both consumers report the broker unreachable.
    let refused_before = sent.lock().await.refused;
    let felt = eventually(Duration::from_secs(30), || async {
        sent.lock().await.refused > refused_before && !ready(&high).await && !ready(&low).await
    })
    .await;
    assert!(
        felt,
        "no POST was refused, or a consumer stayed ready, while the broker was down"
    );
    broker.restart();

    let ready_again = eventually(Duration::from_secs(30), || ready(&event_api)).await;
    assert!(
        ready_again,
        "event-api did not become ready after the restart"
    );
    let resumed = eventually(Duration::from_secs(60), || async {
        accepted(&sent).await >= accepted_before + 50
    })
    .await;
    assert!(
        resumed,
        "POSTs were not accepted again after the restart: {} accepted before, {} now",
        accepted_before,
        accepted(&sent).await
    );
    stop_posting.cancel();
    poster.await.unwrap();
    let sent = Arc::try_unwrap(sent).ok().unwrap().into_inner();
    assert!(
        sent.refused > 0,
        "no POST fell into the outage; the test did not test it"
    );

    // Both dead-letter producers write after the restart: a record with
    // no readable amount is consumer-low's to dead-letter, one whose amount
    // is above the watermark consumer-high's.
    produce(
        &brokers,
        TOPIC,
        &[
            ("garbage-after-restart".to_owned(), b"not json".to_vec()),
            (
                "high-after-restart".to_owned(),
                br#"{"id":"high-after-restart","amount":9.5}"#.to_vec(),
            ),
        ],
    )
    .await;
    let dead_lettered = eventually(Duration::from_secs(60), || async {
        high.metric("events_dead_lettered_total").await >= 1.0
            && low.metric("events_dead_lettered_total").await >= 1.0
    })
    .await;
    assert!(
        dead_lettered,
        "the consumers did not dead-letter the malformed records after the restart"
    );
    let dead = read_topic(
        &brokers,
        DEAD_LETTER_TOPIC,
        2,
        Duration::from_secs(60),
        Duration::from_millis(500),
    )
    .await;
    for key in ["garbage-after-restart", "high-after-restart"] {
        let copies = dead
            .iter()
            .filter(|r| r.key.as_deref() == Some(key))
            .count();
        assert_eq!(
            copies, 1,
            "{key} dead-lettered {copies} times after the restart"
        );
    }

    // Every event record on the topic is stored once, in one store; every
    // accepted event is among them. Refused events may be there too (a
    // refusal does not mean Kafka has not got it), and so may copies that a
    // producer retry wrote twice: the stores keep one per id.
    let records = read_topic(
        &brokers,
        TOPIC,
        sent.accepted.len() + 1,
        Duration::from_secs(60),
        Duration::from_secs(1),
    )
    .await;
    let on_topic: BTreeSet<String> = records
        .iter()
        .filter_map(|r| r.key.clone())
        .filter(|key| key.starts_with("restart-"))
        .collect();
    let missing: Vec<_> = sent
        .accepted
        .iter()
        .filter(|id| !on_topic.contains(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "accepted but not on the topic: {missing:?}"
    );
    let settled = eventually(Duration::from_secs(60), || async {
        stored_count(&postgres, &influx).await >= on_topic.len()
    })
    .await;
    assert!(
        settled,
        "stored {} of the {} events on the topic",
        stored_count(&postgres, &influx).await,
        on_topic.len()
    );
    // Both groups have committed every record on the topic: they commit only
    // after writing, so nothing is left to arrive late.
    let all_committed = eventually(Duration::from_secs(30), || async {
        let mut done = true;
        for group in [GROUP_HIGH, GROUP_LOW] {
            let committed = broker.committed_offsets(group, TOPIC, PARTITIONS).await;
            done &= committed.iter().sum::<i64>() == records.len() as i64;
        }
        done
    })
    .await;
    let committed_after = broker
        .committed_offsets(GROUP_HIGH, TOPIC, PARTITIONS)
        .await;
    assert!(
        all_committed,
        "consumer-high committed {committed_after:?}, consumer-low {:?}, not all {} records",
        broker.committed_offsets(GROUP_LOW, TOPIC, PARTITIONS).await,
        records.len()
    );
    let mut stored = stored_high(&postgres);
    stored.extend(stored_low(&influx).await);
    let stored_total = stored.len();
    let stored: BTreeSet<String> = stored.into_iter().collect();
    assert_eq!(stored_total, stored.len(), "an event is stored twice");
    assert_eq!(stored, on_topic, "stored events differ from the topic's");

    // The consumers went on from their committed offsets: committed offsets
    // survived the restart and moved on, and consumer-high read the records
    // from before the restart about once, not again from offset 0.
    for (before, after) in committed_before.iter().zip(&committed_after) {
        assert!(
            after >= before,
            "{committed_before:?} -> {committed_after:?}"
        );
    }
    let consumed = high.metric("events_consumed_total").await as i64;
    let before: i64 = committed_before.iter().sum();
    assert!(
        consumed < records.len() as i64 + before,
        "consumer-high read {consumed} records of {}: the topic again from the start",
        records.len()
    );
    for service in [&event_api, &high, &low] {
        assert!(ready(service).await, "{} not ready at the end", service.url);
    }

    for service in [low, high, event_api] {
        service.stop().await;
    }
}
