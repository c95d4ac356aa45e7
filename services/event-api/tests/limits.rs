//! Limits and modes that need no working broker: every one of these answers
//! before, or instead of, writing to Kafka.

mod common;

use std::time::Duration;

use common::Api;
use serde_json::{json, Value};

/// A loopback address where no broker listens.
fn no_broker() -> String {
    format!("127.0.0.1:{}", testkit::free_port())
}

#[tokio::test]
async fn unsupported_content_type_is_415() {
    let api = Api::start(&no_broker(), "events", &[]).await;
    let response = api.post("application/xml", "<event/>").await;
    assert_eq!(response.status(), 415);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "unsupported_media_type");
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("application/x-ndjson"));
    api.stop().await;
}

#[tokio::test]
async fn body_over_the_limit_is_413() {
    let api = Api::start(&no_broker(), "events", &["--max-body-bytes", "1000"]).await;
    let big = format!("[{}]", vec![r#"{"amount":1}"#; 200].join(","));
    let response = api.post("application/json", big).await;
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "body_too_large");
    api.stop().await;
}

#[tokio::test]
async fn malformed_json_and_empty_batches_are_400() {
    let api = Api::start(&no_broker(), "events", &[]).await;
    for (body, code) in [
        ("[{", "malformed_body"),
        ("[]", "no_events"),
        ("7", "malformed_body"),
    ] {
        let response = api.post("application/json", body).await;
        assert_eq!(response.status(), 400, "{body}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["error"], code, "{body}");
    }
    api.stop().await;
}

#[tokio::test]
async fn more_in_flight_events_than_the_bound_is_429_and_kafka_timeout_is_503() {
    // A broker that accepts connections but never answers holds every
    // request until the delivery timeout.
    let api = Api::start(
        &testkit::unresponsive_peer(),
        "events",
        &[
            "--max-in-flight-events",
            "10",
            "--kafka-delivery-timeout",
            "3s",
        ],
    )
    .await;
    let batch = |n: usize| Value::from(vec![json!({"amount": 1}); n]).to_string();

    assert_eq!(api.post("application/json", batch(11)).await.status(), 413);

    let waiting = api.post("application/json", batch(8));
    let crowded = async {
        // The 8 events hold their places once they wait for Kafka.
        let holding = testkit::eventually(Duration::from_secs(10), || async {
            api.service.metric("events_in_flight").await == 8.0
        })
        .await;
        assert!(
            holding,
            "the first request's 8 events never waited for Kafka"
        );
        api.post("application/json", batch(5)).await
    };
    let (waiting, crowded) = tokio::join!(waiting, crowded);
    assert_eq!(crowded.status(), 429);
    assert_eq!(crowded.headers()["retry-after"], "1");
    assert_eq!(waiting.status(), 503, "not acknowledged in time");
    let body: Value = waiting.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("8 of 8 events were not acknowledged"),
        "{body}"
    );
    api.stop().await;
}

#[tokio::test]
async fn no_reachable_broker_is_503_at_once() {
    let api = Api::start(&no_broker(), "events", &["--kafka-delivery-timeout", "3s"]).await;
    // Once librdkafka has reported the refused connections (within moments;
    // a request that came first waits out the 3 s delivery timeout), a
    // request is answered without waiting for Kafka at all.
    let prompt = testkit::eventually(Duration::from_secs(20), || async {
        let started = std::time::Instant::now();
        let response = api.post("application/json", r#"{"amount":1}"#).await;
        response.status() == 503 && started.elapsed() < Duration::from_secs(1)
    })
    .await;
    assert!(prompt, "expected a prompt 503 while no broker is reachable");
    api.stop().await;
}

#[tokio::test]
async fn disabled_answers_and_writes_nothing() {
    let api = Api::start(&no_broker(), "events", &["-x"]).await;
    let response = api.post("application/json", r#"[{"amount":1}]"#).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["message"], "processing disabled, did nothing");
    let readyz = reqwest::get(format!("{}/readyz", api.url)).await.unwrap();
    assert_eq!(readyz.status(), 200);
    api.stop().await;
}

#[tokio::test]
async fn every_documented_path_is_served() {
    let api = Api::start(&no_broker(), "events", &["-x"]).await;
    let spec: Value = reqwest::get(format!("{}/openapi.json", api.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let paths = spec["paths"].as_object().unwrap();
    assert!(paths.len() >= 6);
    for (path, operations) in paths {
        for method in operations.as_object().unwrap().keys() {
            let request = match method.as_str() {
                "get" => client.get(format!("{}{path}", api.url)),
                "post" => client
                    .post(format!("{}{path}", api.url))
                    .header("content-type", "application/json")
                    .body(r#"{"amount":1}"#),
                other => panic!("undocumented method {other}"),
            };
            let status = request.send().await.unwrap().status();
            assert!(status != 404 && status != 405, "{method} {path}: {status}");
        }
    }
    api.stop().await;
}

#[tokio::test]
async fn shutdown_finishes_the_requests_in_flight_then_refuses_connections() {
    // A hung broker keeps the request in flight until the 2 s delivery timeout.
    let api = Api::start(
        &testkit::unresponsive_peer(),
        "events",
        &["--kafka-delivery-timeout", "2s"],
    )
    .await;
    let url = api.url.clone();
    let in_flight = tokio::spawn({
        let url = url.clone();
        async move {
            reqwest::Client::new()
                .post(format!("{url}/v1/events"))
                .header("content-type", "application/json")
                .body(r#"[{"amount":1}]"#)
                .send()
                .await
        }
    });
    let waiting = testkit::eventually(Duration::from_secs(10), || async {
        api.service.metric("events_in_flight").await == 1.0
    })
    .await;
    assert!(waiting, "the request never waited for Kafka");
    let stopping = std::time::Instant::now();
    api.stop().await;
    assert!(
        stopping.elapsed() >= Duration::from_secs(1),
        "stop returned before the request in flight was answered"
    );
    let answer = in_flight
        .await
        .unwrap()
        .expect("the request in flight got an answer");
    assert_eq!(
        answer.status(),
        503,
        "not acknowledged within the delivery timeout"
    );
    assert!(
        reqwest::get(format!("{url}/healthz")).await.is_err(),
        "a stopped server takes no new connections"
    );
}
