//! event-api against a real tansu broker: what is acknowledged is on the
//! topic, exactly once per event, and what is rejected is not.

mod common;

use std::time::Duration;

use common::Api;
use serde_json::{json, Value};
use testkit::{read_topic, Tansu};

const READ_TIMEOUT: Duration = Duration::from_secs(20);
const SETTLE: Duration = Duration::from_millis(500);

#[tokio::test]
async fn acknowledged_events_are_on_the_topic_once_with_their_content() {
    let broker = Tansu::start();
    let api = Api::start(&broker.brokers(), "events", &["--kafka-partitions", "3"]).await;
    api.wait_ready().await;

    let batch: Vec<Value> = (0..20)
        .map(|i| json!({"id": format!("json-{i}"), "time": 1_700_000_000_000_i64 + i, "amount": i as f64 / 2.0}))
        .collect();
    let response = api
        .post(
            "application/json; charset=utf-8",
            Value::from(batch).to_string(),
        )
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"message": "ingested 20 events", "ingested": 20})
    );

    // The Go producer's format: one event per line, amount as a string.
    let lines: String = (0..10)
        .map(|i| {
            format!(
                "{{\"id\":\"line-{i}\",\"time\":{},\"amount\":\"6.046602879796196\"}}\n",
                1_700_000_000_100_i64 + i
            )
        })
        .collect();
    assert_eq!(api.post("application/text", lines).await.status(), 200);

    let records = read_topic(&broker.brokers(), "events", 30, READ_TIMEOUT, SETTLE).await;
    assert_eq!(
        records.len(),
        30,
        "every acknowledged event once, nothing else"
    );
    for record in &records {
        let payload: Value = serde_json::from_str(&record.payload).unwrap();
        let id = payload["id"].as_str().unwrap();
        assert_eq!(record.key.as_deref(), Some(id), "keyed by event id");
        if let Some(i) = id.strip_prefix("json-") {
            let i: i64 = i.parse().unwrap();
            assert_eq!(payload["time"], json!(1_700_000_000_000_i64 + i));
            assert_eq!(payload["amount"].as_f64().unwrap(), i as f64 / 2.0);
        } else {
            assert_eq!(
                payload["amount"],
                json!(6.046602879796196),
                "amount stored as a number"
            );
        }
    }
    let partitions: std::collections::HashSet<_> = records.iter().map(|r| r.partition).collect();
    assert!(
        partitions.len() > 1,
        "keys spread events over partitions: {partitions:?}"
    );

    let metrics = reqwest::get(format!("{}/metrics", api.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("events_accepted_total 30"), "{metrics}");
    api.stop().await;
}

#[tokio::test]
async fn a_rejected_batch_writes_nothing() {
    let broker = Tansu::start();
    broker.create_topic("one", 1).await;
    let api = Api::start(&broker.brokers(), "one", &[]).await;
    api.wait_ready().await;

    let bad = json!([
        {"id": "ok-0", "time": 1_700_000_000_000_i64, "amount": 1},
        {"id": "bad-1", "time": 1_700_000_000_000_i64},
        {"id": "bad-2", "time": 1_700_000_000_000_i64, "amount": "NaN"}
    ]);
    let response = api.post("application/json", bad.to_string()).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_events");
    assert_eq!(body["errors"][0]["index"], 1);
    assert_eq!(body["errors"][0]["field"], "amount");
    assert_eq!(body["errors"][1]["index"], 2);
    assert_eq!(body["errors"].as_array().unwrap().len(), 2);

    let good = json!([{"id": "after", "time": 1_700_000_000_000_i64, "amount": 2}]);
    assert_eq!(
        api.post("application/json", good.to_string())
            .await
            .status(),
        200
    );

    // One partition keeps order: anything the bad batch wrote would come first.
    let records = read_topic(&broker.brokers(), "one", 1, READ_TIMEOUT, SETTLE).await;
    let keys: Vec<_> = records.iter().map(|r| r.key.clone().unwrap()).collect();
    assert_eq!(keys, ["after"]);
    api.stop().await;
}

#[tokio::test]
async fn answers_503_while_the_broker_is_down_and_recovers_by_itself() {
    let mut broker = Tansu::start();
    let api = Api::start(
        &broker.brokers(),
        "events",
        &["--kafka-delivery-timeout", "2s"],
    )
    .await;
    api.wait_ready().await;
    let event =
        |id: &str| json!({"id": id, "time": 1_700_000_000_000_i64, "amount": 3}).to_string();
    assert_eq!(
        api.post("application/json", event("before")).await.status(),
        200
    );

    broker.stop();
    let readyz = format!("{}/readyz", api.url);
    let noticed = testkit::eventually(Duration::from_secs(10), || async {
        reqwest::get(&readyz).await.unwrap().status() == 503
    })
    .await;
    assert!(noticed, "/readyz still 200 with the broker stopped");
    let response = api.post("application/json", event("during")).await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "kafka_unavailable");

    broker.restart();
    let recovered = testkit::eventually(Duration::from_secs(30), || async {
        api.post("application/json", event("after")).await.status() == 200
    })
    .await;
    assert!(
        recovered,
        "event-api did not recover after the broker came back"
    );

    let records = read_topic(&broker.brokers(), "events", 2, READ_TIMEOUT, SETTLE).await;
    let keys: Vec<_> = records.iter().filter_map(|r| r.key.clone()).collect();
    assert!(keys.contains(&"before".to_owned()), "{keys:?}");
    assert!(keys.contains(&"after".to_owned()), "{keys:?}");
    api.stop().await;
}
