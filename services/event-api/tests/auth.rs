//! event-api with API_TOKEN_FILE set, against a real tansu broker: an ingest
//! request with the token is written to Kafka; one without it, with another
//! scheme or with a token that differs even in its last byte is answered
//! 401 and writes nothing. Probes, metrics and the document stay open.

mod common;

use std::time::Duration;

use clap::Parser;
use common::Api;
use serde_json::{json, Value};
use testkit::{read_topic, Tansu};

const TOKEN: &str = "k8s-secret-0123456789abcdef";

fn event(id: &str) -> String {
    json!([{"id": id, "time": 1_700_000_000_000_i64, "amount": 1.5}]).to_string()
}

async fn post(url: &str, authorization: Option<&str>, body: String) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body);
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    request.send().await.expect("event-api answers")
}

#[tokio::test]
async fn only_requests_with_the_token_are_ingested() {
    let broker = Tansu::start();
    broker.create_topic("one", 1).await;
    let file = testkit::temp_dir("event-api-token").join("token");
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    let api = Api::start(
        &broker.brokers(),
        "one",
        &["--api-token-file", file.to_str().unwrap()],
    )
    .await;
    api.wait_ready().await;

    // Differs from TOKEN in its last byte only.
    let mut last_byte = TOKEN.to_owned();
    last_byte.pop();
    last_byte.push('g');
    let refused = [
        (None, "Bearer"),
        (Some(format!("Basic {TOKEN}")), "Bearer"),
        (Some(TOKEN.to_owned()), "Bearer"),
        (
            Some("Bearer wrong".to_owned()),
            "Bearer error=\"invalid_token\"",
        ),
        (
            Some(format!("Bearer {last_byte}")),
            "Bearer error=\"invalid_token\"",
        ),
        (
            Some(format!("Bearer {TOKEN}x")),
            "Bearer error=\"invalid_token\"",
        ),
    ];
    for path in ["/v1/events", "/"] {
        for (n, (authorization, challenge)) in refused.iter().enumerate() {
            let url = format!("{}{path}", api.url);
            let response = post(&url, authorization.as_deref(), event(&format!("no-{n}"))).await;
            assert_eq!(response.status(), 401, "{path} {authorization:?}");
            assert_eq!(response.headers()["www-authenticate"], *challenge);
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"], "unauthorized", "{body}");
            let message = body["message"].as_str().unwrap();
            assert!(!message.contains(TOKEN), "{message}");
        }
    }

    let bearer = format!("Bearer {TOKEN}");
    let response = post(
        &format!("{}/v1/events", api.url),
        Some(&bearer),
        event("yes-1"),
    )
    .await;
    assert_eq!(response.status(), 200);
    let response = post(&format!("{}/", api.url), Some(&bearer), event("yes-2")).await;
    assert_eq!(response.status(), 200);

    // One partition keeps order: anything a refused request wrote would be
    // there too, and first.
    let records = read_topic(
        &broker.brokers(),
        "one",
        2,
        Duration::from_secs(20),
        Duration::from_millis(500),
    )
    .await;
    let keys: Vec<_> = records.iter().map(|r| r.key.clone().unwrap()).collect();
    assert_eq!(keys, ["yes-1", "yes-2"]);

    // What probes, scrapers and clients reading the document need is open.
    for path in ["/", "/healthz", "/readyz", "/metrics", "/openapi.json"] {
        assert_eq!(api.service.get(path).await.status(), 200, "{path}");
    }
    let metrics = api.service.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("events_accepted_total 2"), "{metrics}");
    api.stop().await;
}

/// The document declares the token, optional as it is, and the 401.
#[test]
fn the_document_states_the_token_and_the_401() {
    let spec: Value = serde_json::from_str(&event_api::OPENAPI).unwrap();
    assert_eq!(
        spec["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let codes = &spec["components"]["schemas"]["Error"]["properties"]["error"]["enum"];
    assert!(codes.as_array().unwrap().contains(&json!("unauthorized")));
    for path in ["/", "/v1/events"] {
        let post = &spec["paths"][path]["post"];
        assert_eq!(post["security"], json!([{"bearer": []}, {}]), "{path}");
        assert!(post["responses"]["401"].is_object(), "{path}");
    }
    for path in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
        assert!(spec["paths"][path]["get"]["security"].is_null(), "{path}");
    }
}

#[test]
fn the_token_is_never_printed() {
    let config = event_api::Config::try_parse_from(["event-api", "--api-token", TOKEN]).unwrap();
    let printed = format!("{config:?} {config:#?}");
    assert!(!printed.contains(TOKEN), "{printed}");
    assert!(printed.contains("<redacted>"), "{printed}");
}

#[tokio::test]
async fn an_unreadable_token_file_stops_the_start() {
    let config = event_api::Config::try_parse_from([
        "event-api",
        "-x",
        "--api-token-file",
        "/nonexistent/token",
    ])
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let error = event_api::run(config, listener, tokio_util::sync::CancellationToken::new())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("API_TOKEN_FILE"), "{error}");
}
