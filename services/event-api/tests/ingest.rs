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

/// Receipts when asked, by query parameter or by `Prefer`: each names the
/// partition and offset where the event is on the topic. Asked for nothing,
/// the answer is the Go version's.
#[tokio::test]
async fn receipts_say_where_each_acknowledged_event_is() {
    let broker = Tansu::start();
    let api = Api::start(&broker.brokers(), "receipts", &["--kafka-partitions", "3"]).await;
    api.wait_ready().await;
    let client = reqwest::Client::new();
    let batch = |prefix: &str| -> String {
        let events: Vec<Value> = (0..10)
            .map(|i| json!({"id": format!("{prefix}-{i}"), "time": 1_700_000_000_000_i64 + i, "amount": i}))
            .collect();
        Value::from(events).to_string()
    };
    // Without a time, the receipt gives the one event-api assigned.
    let untimed = r#"[{"amount": 2.5}]"#;
    let asked = [
        client
            .post(format!("{}/v1/events?receipts=true", api.url))
            .body(batch("query")),
        client
            .post(format!("{}/", api.url))
            .header("prefer", "respond-async, return=representation")
            .body(batch("prefer")),
        client
            .post(format!("{}/v1/events?receipts=1", api.url))
            .body(untimed),
    ];
    let mut receipts = Vec::new();
    for request in asked {
        let response = request
            .header("content-type", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        receipts.extend(body["receipts"].as_array().unwrap().clone());
    }
    assert_eq!(receipts.len(), 21);
    let untimed = &receipts[20];
    assert!(untimed["time"].as_i64().unwrap() > 1_700_000_000_000);

    // Not asked, or asked not to: no receipts.
    for url in [
        format!("{}/v1/events", api.url),
        format!("{}/v1/events?receipts=false", api.url),
    ] {
        let response = client
            .post(url)
            .header("content-type", "application/json")
            .header("prefer", "return=minimal")
            .body(batch("plain"))
            .send()
            .await
            .unwrap();
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body,
            json!({"message": "ingested 10 events", "ingested": 10})
        );
    }
    let response = client
        .post(format!("{}/v1/events?receipts=yes", api.url))
        .header("content-type", "application/json")
        .body(batch("bad"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        (body["error"].as_str(), body["parameter"].as_str()),
        (Some("bad_parameter"), Some("receipts"))
    );

    let records = read_topic(&broker.brokers(), "receipts", 41, READ_TIMEOUT, SETTLE).await;
    assert_eq!(records.len(), 41, "the refused batch wrote nothing");
    for receipt in &receipts {
        let id = receipt["id"].as_str().unwrap();
        let record = records
            .iter()
            .find(|r| r.key.as_deref() == Some(id))
            .unwrap_or_else(|| panic!("{id} is not on the topic"));
        assert_eq!(
            (record.partition, record.offset),
            (
                receipt["partition"].as_i64().unwrap() as i32,
                receipt["offset"].as_i64().unwrap()
            ),
            "{id}"
        );
        let payload: Value = serde_json::from_str(&record.payload).unwrap();
        assert_eq!(payload["time"], receipt["time"], "{id}");
    }
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
