//! The aggregator with API_TOKEN_FILE set, against a real TimescaleDB and
//! InfluxDB holding events written by the consumers' own sinks: every /api
//! path (the stream and the pipeline included) answers with the token and
//! 401 without it, with another scheme or with a token that differs in its
//! last byte only. Probes, metrics and the document stay open.

use std::time::Duration;

use clap::Parser;
use consumer_high::TimescaleSink;
use consumer_low::InfluxSink;
use serde_json::{json, Value};
use streamproc_event::{Amount, Event, EventId, EventTime};
use streamproc_kafka::consume::Sink;
use testkit::{InProcess, InfluxDb, Postgres};

const TOKEN: &str = "aggregator-0123456789abcdef";
/// A bucket edge, as in tests/queries.rs.
const T0: i64 = 1_700_000_040_000;

fn event(amount: f64) -> Event {
    Event::new(
        EventId::generate(),
        EventTime::from_millis(T0).unwrap(),
        Amount::new(amount).unwrap(),
    )
}

async fn get(url: &str, authorization: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(url);
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    request.send().await.expect("the aggregator answers")
}

#[tokio::test]
async fn the_api_answers_with_the_token_only() {
    let postgres = Postgres::start();
    let influx = InfluxDb::start();
    let high =
        consumer_high::Config::try_parse_from(["t", "--postgres-url", &postgres.url()]).unwrap();
    let low =
        consumer_low::Config::try_parse_from(["t", "--influxdb-host", &influx.url()]).unwrap();
    let low = InfluxSink::new(low.influx).unwrap();
    TimescaleSink::new(&high.postgres)
        .unwrap()
        .write(&testkit::logged(0, [event(7.0)]))
        .await
        .unwrap();
    low.write(&testkit::logged(0, [event(2.0)])).await.unwrap();
    low.rollups().refresh().await.unwrap();

    let file = testkit::temp_dir("aggregator-token").join("token");
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    let config = aggregator::Config::try_parse_from([
        "aggregator".to_owned(),
        "--postgres-url".into(),
        postgres.url(),
        "--influxdb-host".into(),
        influx.url(),
        // No broker and no event-api here: the pipeline watch must not find
        // a developer's stack on the default ports.
        "--kafka-brokers".into(),
        format!("127.0.0.1:{}", testkit::free_port()),
        "--api-url".into(),
        format!("http://127.0.0.1:{}/", testkit::free_port()),
        "--api-token-file".into(),
        file.to_str().unwrap().into(),
    ])
    .unwrap();
    assert!(!format!("{config:?}").contains(TOKEN));
    let aggregator =
        InProcess::spawn(|listener, shutdown| aggregator::run(config, listener, shutdown)).await;
    let ready = testkit::eventually(Duration::from_secs(30), || async {
        aggregator.get("/readyz").await.status() == 200
    })
    .await;
    assert!(ready, "the aggregator became ready without a token");
    for path in ["/", "/healthz", "/metrics", "/openapi.json"] {
        assert_eq!(aggregator.get(path).await.status(), 200, "{path}");
    }

    let bearer = format!("Bearer {TOKEN}");
    let series = format!("/api/v1/series?from={T0}&to={}&step=10s", T0 + 10_000);
    let paths = [
        "/api",
        &series,
        "/api/v1/totals",
        "/api/v1/stream?step=1s&last=3",
        "/api/v1/pipeline",
    ];
    let mut last_byte = TOKEN.to_owned();
    last_byte.pop();
    last_byte.push('g');
    for path in paths {
        let url = format!("{}{path}", aggregator.url);
        for wrong in [
            None,
            Some(format!("Basic {TOKEN}")),
            Some(format!("Bearer {last_byte}")),
            Some("Bearer".to_owned()),
        ] {
            let response = get(&url, wrong.as_deref()).await;
            assert_eq!(response.status(), 401, "{path} {wrong:?}");
            assert!(response.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer"));
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"], "unauthorized", "{path}: {body}");
        }
        let response = get(&url, Some(&bearer)).await;
        // The pipeline may not have finished its first probe (503 then).
        assert_ne!(response.status(), 401, "{path}");
        if path.starts_with("/api/v1/stream") {
            assert_eq!(response.status(), 200);
            assert_eq!(response.headers()["content-type"], "text/event-stream");
            let first = tokio::time::timeout(Duration::from_secs(10), async {
                let mut response = response;
                response.chunk().await
            })
            .await
            .expect("the stream sends within 10 s")
            .unwrap();
            assert!(first.is_some(), "the stream is open");
        } else if path != "/api/v1/pipeline" {
            assert_eq!(response.status(), 200, "{path}");
        }
    }

    let response = get(&format!("{}{series}", aggregator.url), Some(&bearer)).await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["high"]["points"][0]["count"], json!(1), "{body}");
    assert_eq!(body["low"]["points"][0]["count"], json!(1), "{body}");
    // Every refusal is counted with its status, as any answer is.
    let metrics = aggregator.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("status=\"401\""), "{metrics}");
    aggregator.stop().await;
}

/// The document declares the token, optional as it is, and the 401.
#[test]
fn the_document_states_the_token_and_the_401() {
    let spec: Value = serde_json::from_str(&aggregator::OPENAPI).unwrap();
    assert_eq!(
        spec["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    for (path, operations) in spec["paths"].as_object().unwrap() {
        let get = &operations["get"];
        if path.starts_with("/api") {
            assert_eq!(get["security"], json!([{"bearer": []}, {}]), "{path}");
            assert!(get["responses"]["401"].is_object(), "{path}");
        } else {
            assert!(get["security"].is_null(), "{path}");
        }
    }
}
