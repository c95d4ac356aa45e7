//! The aggregator against a real TimescaleDB and a real InfluxDB holding
//! known events, written by consumer-high's and consumer-low's own sinks:
//! exact buckets, aligned series, zero-fill, bucket edges, the 400s (also
//! for hostile numbers), a store that is down, the live stream, the limits
//! on concurrent work and DISABLE, totals across hours and days.

use std::time::Duration;

use clap::Parser;
use consumer_high::TimescaleSink;
use consumer_low::InfluxSink;
use serde_json::{json, Value};
use streamproc_event::{Amount, Event, EventId, EventTime};
use streamproc_kafka::consume::Sink;
use testkit::{eventually, logged, InProcess, InfluxDb, Postgres};

/// A bucket edge: a whole minute, so divisible by every step used below.
const T0: i64 = 1_700_000_040_000;

struct Stores {
    postgres: Postgres,
    influx: InfluxDb,
    high: TimescaleSink,
    low: InfluxSink,
}

impl Stores {
    fn start() -> Self {
        let postgres = Postgres::start();
        let influx = InfluxDb::start();
        let high = consumer_high::Config::try_parse_from(["t", "--postgres-url", &postgres.url()])
            .unwrap();
        let low =
            consumer_low::Config::try_parse_from(["t", "--influxdb-host", &influx.url()]).unwrap();
        Self {
            high: TimescaleSink::new(&high.postgres).unwrap(),
            low: InfluxSink::new(low.influx).unwrap(),
            postgres,
            influx,
        }
    }

    /// Stores `(time, amount)` events where the consumers would, with their
    /// sinks: above 5 in TimescaleDB, the rest in InfluxDB.
    async fn write(&self, events: &[(i64, f64)]) {
        let (high, low): (Vec<Event>, Vec<Event>) = events
            .iter()
            .map(|&(time, amount)| {
                Event::new(
                    EventId::generate(),
                    EventTime::from_millis(time).unwrap(),
                    Amount::new(amount).unwrap(),
                )
            })
            .partition(|event| event.amount.value() > 5.0);
        self.high.write(&logged(0, high)).await.unwrap();
        self.low.write(&logged(0, low)).await.unwrap();
        // What consumer-low's maintainer does within half a second.
        self.low.rollups().refresh().await.unwrap();
    }

    fn args(&self) -> Vec<String> {
        vec![
            "aggregator".into(),
            "--postgres-url".into(),
            self.postgres.url(),
            "--influxdb-host".into(),
            self.influx.url(),
            "--query-timeout".into(),
            "2s".into(),
            // No broker and no event-api here: the pipeline watch must not
            // find a developer's stack on the default ports.
            "--kafka-brokers".into(),
            format!("127.0.0.1:{}", testkit::free_port()),
            "--api-url".into(),
            format!("http://127.0.0.1:{}/", testkit::free_port()),
        ]
    }

    async fn aggregator(&self, extra: &[&str]) -> InProcess {
        let mut args = self.args();
        args.extend(extra.iter().map(|s| s.to_string()));
        let config = aggregator::Config::try_parse_from(args).unwrap();
        InProcess::spawn(|listener, shutdown| aggregator::run(config, listener, shutdown)).await
    }
}

async fn get_json(service: &InProcess, path: &str) -> (u16, Value) {
    let response = service.get(path).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// `(time, count, sum)` of every point of one series.
fn points(body: &Value, series: &str) -> Vec<(i64, u64, f64)> {
    body[series]["points"]
        .as_array()
        .unwrap_or_else(|| panic!("{series} has points: {body}"))
        .iter()
        .map(|p| {
            (
                p["time"].as_i64().unwrap(),
                p["count"].as_u64().unwrap(),
                p["sum"].as_f64().unwrap(),
            )
        })
        .collect()
}

/// Events on both sides of the edges of 10 s buckets from T0, and one just
/// before and one at the end of the window, which must not count.
const KNOWN: [(i64, f64); 11] = [
    (T0 - 1, 6.5),
    (T0, 6.0),
    (T0 + 9_999, 7.0),
    (T0 + 9_999, 1.0),
    (T0 + 10_000, 8.0),
    (T0 + 10_000, 2.0),
    (T0 + 10_001, 3.0),
    (T0 + 20_000, 4.0),
    (T0 + 35_000, 9.0),
    (T0 + 39_999, 5.0),
    (T0 + 40_000, 9.5),
];

#[tokio::test]
async fn buckets_are_exact_aligned_and_zero_filled() {
    let stores = Stores::start();
    stores.write(&KNOWN).await;
    let aggregator = stores.aggregator(&[]).await;

    let path = format!("/api/v1/series?from={T0}&to={}&step=10s", T0 + 40_000);
    let (status, body) = get_json(&aggregator, &path).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["from"].as_i64(), body["step"].as_i64()),
        (Some(T0), Some(10_000))
    );
    assert_eq!(
        points(&body, "high"),
        [
            (T0, 2, 13.0),
            (T0 + 10_000, 1, 8.0),
            (T0 + 20_000, 0, 0.0),
            (T0 + 30_000, 1, 9.0),
        ]
    );
    assert_eq!(
        points(&body, "low"),
        [
            (T0, 1, 1.0),
            (T0 + 10_000, 2, 5.0),
            (T0 + 20_000, 1, 4.0),
            (T0 + 30_000, 1, 5.0),
        ]
    );
    let first = &body["high"]["points"][0];
    assert_eq!(
        (&first["min"], &first["max"], &first["mean"]),
        (&json!(6.0), &json!(7.0), &json!(6.5))
    );
    let empty = &body["high"]["points"][2];
    assert_eq!(
        (&empty["min"], &empty["mean"]),
        (&Value::Null, &Value::Null)
    );
    assert_eq!(body["high"]["store"], "timescaledb");
    assert_eq!(body["low"]["store"], "influxdb");

    // One-second buckets put each event in the second it happened.
    let path = format!("/api/v1/series?from={T0}&to={}&step=1s", T0 + 40_000);
    let (_, body) = get_json(&aggregator, &path).await;
    let counted = |series| -> Vec<(i64, u64)> {
        points(&body, series)
            .into_iter()
            .filter(|p| p.1 > 0)
            .map(|p| ((p.0 - T0) / 1000, p.1))
            .collect()
    };
    assert_eq!(counted("high"), [(0, 1), (9, 1), (10, 1), (35, 1)]);
    assert_eq!(counted("low"), [(9, 1), (10, 2), (20, 1), (39, 1)]);
    assert_eq!(body["high"]["points"].as_array().unwrap().len(), 40);

    // max_points derives a round step (30 s in 2 buckets: 15 s), and the
    // window is rounded out to whole buckets.
    let path = format!(
        "/api/v1/series?from={}&to={}&max_points=2",
        T0 + 5_000,
        T0 + 35_000
    );
    let (_, body) = get_json(&aggregator, &path).await;
    assert_eq!(body["step"], 15_000);
    assert_eq!(
        points(&body, "high"),
        [(T0, 3, 21.0), (T0 + 15_000, 0, 0.0), (T0 + 30_000, 2, 18.5)]
    );

    let (status, totals) = get_json(&aggregator, "/api/v1/totals").await;
    assert_eq!(status, 200, "{totals}");
    assert_eq!(totals["high"]["count"], 6);
    assert_eq!(totals["high"]["sum"], 46.0);
    assert_eq!(totals["high"]["last_time"], T0 + 40_000);
    assert_eq!(totals["low"]["count"], 5);
    assert_eq!(totals["low"]["sum"], 15.0);
    assert_eq!(
        totals["low"]["last_time"],
        T0 + 39_000,
        "InfluxDB: its second"
    );
    aggregator.stop().await;
}

#[tokio::test]
async fn legacy_api_has_both_types_for_every_bucket_start() {
    let stores = Stores::start();
    let now = aggregator_now();
    let bucket = now / 10_000 * 10_000;
    stores
        .write(&[
            (bucket - 20_000, 7.0),
            (bucket - 20_000 + 9_999, 8.0),
            (bucket - 10_000, 2.0),
        ])
        .await;
    let aggregator = stores.aggregator(&[]).await;
    let (status, body) = get_json(&aggregator, "/api").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["message"], "ok");
    let points = body["points"].as_array().unwrap();
    assert_eq!(points.len(), 120, "60 buckets of 10 s, low and high each");
    let times: Vec<i64> = points.iter().map(|p| p["time"].as_i64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "sorted by time");
    assert!(times.iter().all(|t| t % 10_000 == 0), "bucket starts");
    for pair in points.chunks(2) {
        assert_eq!(
            (&pair[0]["type"], &pair[1]["type"]),
            (&json!("low"), &json!("high"))
        );
        assert_eq!(pair[0]["time"], pair[1]["time"]);
    }
    let count = |time: i64, kind: &str| {
        points
            .iter()
            .find(|p| p["time"] == time && p["type"] == kind)
            .map(|p| p["count"].as_u64().unwrap())
    };
    // The test may straddle a bucket edge: allow the grid to have moved on.
    assert_eq!(count(bucket - 20_000, "high"), Some(2));
    assert_eq!(count(bucket - 20_000, "low"), Some(0));
    assert_eq!(count(bucket - 10_000, "low"), Some(1));
    assert_eq!(count(bucket - 10_000, "high"), Some(0));
    aggregator.stop().await;
}

fn aggregator_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test]
async fn invalid_parameters_are_400s_naming_the_parameter() {
    let stores = Stores::start();
    let aggregator = stores.aggregator(&[]).await;
    let cases = [
        ("from=yesterday", "from"),
        ("to=12:00", "to"),
        ("from=now&to=now-1h", "from"),
        ("from=2000&to=1000", "from"),
        ("step=0s", "step"),
        ("step=1.5s", "step"),
        ("step=quick", "step"),
        ("from=now-24h&step=1s", "step"),
        ("max_points=100000", "max_points"),
        ("max_points=many", "max_points"),
        ("step=10s&max_points=10", "step"),
    ];
    for (query, parameter) in cases {
        let (status, body) = get_json(&aggregator, &format!("/api/v1/series?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        // The error body event-api answers with too.
        assert_eq!(body["error"], "bad_parameter", "{query}: {body}");
        assert_eq!(body["parameter"], parameter, "{query}: {body}");
        assert!(
            body["message"].as_str().unwrap().contains(parameter),
            "{body}"
        );
    }
    let (status, body) = get_json(&aggregator, "/api/v1/stream?last=0").await;
    assert_eq!((status, &body["parameter"]), (400, &json!("last")));
    aggregator.stop().await;
}

#[tokio::test]
async fn a_store_that_is_down_is_named_never_shown_as_zeros() {
    let mut stores = Stores::start();
    stores.write(&KNOWN).await;
    let aggregator = stores.aggregator(&[]).await;
    let path = format!("/api/v1/series?from={T0}&to={}&step=10s", T0 + 40_000);

    stores.influx.stop();
    let (status, body) = get_json(&aggregator, &path).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["low"]["available"], false);
    assert!(
        body["low"].get("points").is_none(),
        "no made-up points: {body}"
    );
    assert!(body["low"]["error"]
        .as_str()
        .unwrap()
        .starts_with("influxdb: "));
    assert_eq!(
        points(&body, "high")[0],
        (T0, 2, 13.0),
        "the other store still answers"
    );
    let (status, legacy) = get_json(&aggregator, "/api").await;
    assert_eq!(status, 503);
    assert!(
        legacy["message"].as_str().unwrap().contains("influxdb"),
        "{legacy}"
    );
    assert!(legacy.get("points").is_none());
    let readyz = aggregator.get("/readyz").await;
    assert_eq!(readyz.status(), 503);
    assert!(readyz.text().await.unwrap().contains("influxdb"));
    let (status, totals) = get_json(&aggregator, "/api/v1/totals").await;
    assert_eq!((status, &totals["low"]["available"]), (503, &json!(false)));

    stores.influx.restart();
    stores.postgres.stop();
    let (status, body) = get_json(&aggregator, &path).await;
    assert_eq!(status, 503, "{body}");
    assert!(body["high"]["error"]
        .as_str()
        .unwrap()
        .starts_with("timescaledb: "));
    assert_eq!(points(&body, "low")[1], (T0 + 10_000, 2, 5.0));
    assert_eq!(
        aggregator.get("/healthz").await.status(),
        200,
        "alive throughout"
    );

    stores.postgres.restart();
    let recovered = eventually(Duration::from_secs(20), || async {
        get_json(&aggregator, &path).await.0 == 200
    })
    .await;
    assert!(recovered, "answers again once both stores are back");
    assert!(
        aggregator
            .metric("store_query_failures_total{store=\"influxdb\"}")
            .await
            >= 3.0
    );
    aggregator.stop().await;
}

#[tokio::test]
async fn starts_while_postgres_is_down_and_becomes_ready_when_it_answers() {
    let stores = Stores::start();
    stores.write(&KNOWN).await;
    stores.postgres.stop();
    let aggregator = stores.aggregator(&[]).await;
    assert_eq!(aggregator.get("/healthz").await.status(), 200);
    assert_eq!(aggregator.get("/readyz").await.status(), 503);
    let (status, legacy) = get_json(&aggregator, "/api").await;
    assert_eq!(status, 503);
    assert!(
        legacy["message"].as_str().unwrap().contains("timescaledb"),
        "{legacy}"
    );

    stores.postgres.restart();
    let ready = eventually(Duration::from_secs(20), || async {
        aggregator.get("/readyz").await.status() == 200
    })
    .await;
    assert!(ready, "ready once PostgreSQL answers");
    let (status, totals) = get_json(&aggregator, "/api/v1/totals").await;
    assert_eq!((status, &totals["high"]["count"]), (200, &json!(6)));
    aggregator.stop().await;
}

/// Reads server-sent events until `enough` says stop; the data of each
/// `series` event.
async fn read_stream(
    response: reqwest::Response,
    mut enough: impl FnMut(&[Value]) -> bool,
) -> Vec<Value> {
    let mut response = response;
    let mut buffer = String::new();
    let mut events = Vec::new();
    while !enough(&events) {
        let chunk = tokio::time::timeout(Duration::from_secs(10), response.chunk())
            .await
            .expect("the stream sends within 10 s")
            .unwrap()
            .expect("the stream stays open");
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            if frame.lines().any(|l| l == "event: series") {
                let data = frame
                    .lines()
                    .find_map(|l| l.strip_prefix("data: "))
                    .unwrap();
                events.push(serde_json::from_str(data).unwrap());
            }
        }
    }
    events
}

#[tokio::test]
async fn the_stream_pushes_new_events_as_they_are_stored() {
    let stores = Stores::start();
    stores.write(&KNOWN).await;
    let aggregator = stores.aggregator(&["--stream-interval", "200ms"]).await;
    let response = reqwest::get(format!("{}/api/v1/stream?step=1s&last=30", aggregator.url))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    assert_eq!(aggregator.metric("stream_clients").await, 1.0);

    let events = read_stream(response, |events| !events.is_empty()).await;
    let first = &events[0];
    assert_eq!(first["step"], 1_000);
    assert_eq!(first["high"]["points"].as_array().unwrap().len(), 30);
    let total =
        |event: &Value, series: &str| -> u64 { points(event, series).iter().map(|p| p.1).sum() };
    assert_eq!((total(first, "high"), total(first, "low")), (0, 0));

    let now = aggregator_now();
    stores.write(&[(now, 9.0), (now, 1.0), (now, 2.0)]).await;
    let response = reqwest::get(format!("{}/api/v1/stream?step=1s&last=30", aggregator.url))
        .await
        .unwrap();
    let events = read_stream(response, |events| {
        events
            .last()
            .is_some_and(|e| total(e, "high") == 1 && total(e, "low") == 2)
    })
    .await;
    assert!(!events.is_empty());
    aggregator.stop().await;
}

#[tokio::test]
async fn disabled_answers_without_querying() {
    let unreachable = testkit::unresponsive_peer();
    let config = aggregator::Config::try_parse_from([
        "aggregator",
        "-x",
        "--postgres-url",
        &format!("postgres://postgres@{unreachable}/streamproc"),
        "--influxdb-host",
        &format!("http://{unreachable}"),
    ])
    .unwrap();
    let aggregator =
        InProcess::spawn(|listener, shutdown| aggregator::run(config, listener, shutdown)).await;
    let (status, body) =
        tokio::time::timeout(Duration::from_secs(1), get_json(&aggregator, "/api"))
            .await
            .expect("no store is asked");
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"message": aggregator::DISABLED_MESSAGE, "points": []})
    );
    let (status, body) = get_json(&aggregator, "/api/v1/series").await;
    assert_eq!(
        (status, &body["message"]),
        (503, &json!(aggregator::DISABLED_MESSAGE))
    );
    assert_eq!(aggregator.get("/readyz").await.status(), 200);
    let (status, body) = get_json(&aggregator, "/api/v1/pipeline").await;
    assert_eq!(
        (status, &body["message"]),
        (503, &json!(aggregator::DISABLED_MESSAGE))
    );
    aggregator.stop().await;
}

/// PIPELINE_WATCH=false: nothing is watched, and the endpoint says so.
#[tokio::test]
async fn the_pipeline_watch_can_be_switched_off() {
    let unreachable = testkit::unresponsive_peer();
    let config = aggregator::Config::try_parse_from([
        "aggregator",
        "--postgres-url",
        &format!("postgres://postgres@{unreachable}/streamproc"),
        "--influxdb-host",
        &format!("http://{unreachable}"),
        "--pipeline-watch=false",
    ])
    .unwrap();
    let aggregator =
        InProcess::spawn(|listener, shutdown| aggregator::run(config, listener, shutdown)).await;
    let response = aggregator.get("/api/v1/pipeline").await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["message"], aggregator::WATCH_OFF);
    let metrics = aggregator.get("/metrics").await.text().await.unwrap();
    assert!(!metrics.contains("pipeline_stage_status"), "{metrics}");
    aggregator.stop().await;
}

/// With the stores up and neither a broker nor event-api where the settings
/// point, the pipeline names both as down, each with its reason, and the
/// stores as ok; every stage is listed, in pipeline order.
#[tokio::test]
async fn the_pipeline_names_what_is_missing() {
    let stores = Stores::start();
    stores.write(&KNOWN).await;
    let aggregator = stores.aggregator(&["--pipeline-interval", "200ms"]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let body = loop {
        let (status, body) = get_json(&aggregator, "/api/v1/pipeline").await;
        if status == 200 && body["stages"][1]["status"] == "down" {
            break body;
        }
        assert!(tokio::time::Instant::now() < deadline, "{status} {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let names: Vec<&str> = body["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, aggregator::STAGES);
    let stage = |name: &str| body["stages"][names.iter().position(|n| *n == name).unwrap()].clone();
    assert_eq!(stage("event-api")["status"], "down");
    assert!(
        stage("event-api")["reason"]
            .as_str()
            .unwrap()
            .starts_with("does not answer"),
        "{body}"
    );
    assert!(
        stage("kafka")["reason"]
            .as_str()
            .unwrap()
            .contains("does not answer"),
        "{body}"
    );
    assert_eq!(stage("consumer-high")["lag_events"], Value::Null);
    for name in ["timescaledb", "influxdb"] {
        assert_eq!(stage(name)["status"], "ok", "{body}");
        assert_eq!(stage(name)["reason"], Value::Null);
        assert!(stage(name)["figures"]["latency_ms"].is_number());
    }
    assert_eq!(body["status"], "down");
    let problems = body["problems"].as_array().unwrap();
    assert!(
        problems[0].as_str().unwrap().starts_with("event-api: "),
        "{body}"
    );
    let metrics = aggregator.get("/metrics").await.text().await.unwrap();
    for line in [
        "pipeline_stage_status{stage=\"kafka\"} 2",
        "pipeline_stage_status{stage=\"influxdb\"} 0",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    aggregator.stop().await;
}

#[tokio::test]
async fn every_documented_path_is_served() {
    let stores = Stores::start();
    stores.write(&KNOWN).await;
    let aggregator = stores.aggregator(&[]).await;
    let (status, spec) = get_json(&aggregator, "/openapi.json").await;
    assert_eq!(status, 200);
    let paths = spec["paths"].as_object().unwrap();
    for path in paths.keys() {
        let response = if path == "/api/v1/stream" {
            // Its headers are enough: the body never ends.
            reqwest::get(format!("{}{path}", aggregator.url))
                .await
                .unwrap()
        } else if path == "/api/v1/pipeline" {
            // 503 until the first probe of the pipeline has finished.
            let probed = eventually(Duration::from_secs(10), || async {
                aggregator.get(path).await.status() == 200
            })
            .await;
            assert!(probed, "{path}");
            aggregator.get(path).await
        } else if path.contains('{') {
            // Looked up where nothing is: the handler's own 404, not the
            // router's.
            let filled = path
                .replace("{id}", "nowhere")
                .replace("{partition}", "0")
                .replace("{offset}", "0");
            let (status, body) = get_json(&aggregator, &filled).await;
            assert_eq!(
                (status, &body["error"]),
                (404, &json!("not_found")),
                "{filled}"
            );
            continue;
        } else {
            aggregator.get(path).await
        };
        assert_eq!(response.status(), 200, "{path}");
    }
    aggregator.stop().await;
}

/// The GETs of issue 9 and their kin: numbers at and past every limit,
/// each a 400 naming the parameter, with an answer that does not grow with
/// the value; and the service answers normally right after.
#[tokio::test]
async fn hostile_numbers_are_400s_naming_the_parameter() {
    let stores = Stores::start();
    stores.write(&KNOWN).await;
    let aggregator = stores.aggregator(&[]).await;
    let i64_max = i64::MAX.to_string();
    let i64_min = i64::MIN.to_string();
    let u64_max = u64::MAX.to_string();
    let long = "9".repeat(50_000);
    let cases: Vec<(String, &str)> = vec![
        // The stream: step × last once wrapped, passed the size check and
        // aborted the process allocating the grid.
        (format!("/api/v1/stream?step=1s&last={i64_max}"), "last"),
        ("/api/v1/stream?step=9223372036854775&last=2".into(), "step"),
        (
            "/api/v1/stream?step=1000000000s&last=9223372".into(),
            "last",
        ),
        ("/api/v1/stream?step=1d&last=10001".into(), "last"),
        (format!("/api/v1/stream?step={u64_max}"), "step"),
        ("/api/v1/stream?step=9223372036854775807s".into(), "step"),
        ("/api/v1/stream?last=".into(), "last"),
        ("/api/v1/stream?last=-1".into(), "last"),
        (format!("/api/v1/stream?last={u64_max}"), "last"),
        (format!("/api/v1/stream?last={long}"), "last"),
        ("/api/v1/stream?last=5&last=6".into(), "last"),
        // The series.
        (
            format!("/api/v1/series?from={i64_min}&to=1000&step=1s"),
            "from",
        ),
        (format!("/api/v1/series?from=0&to={i64_max}&step=1s"), "to"),
        (format!("/api/v1/series?to={u64_max}"), "to"),
        (
            "/api/v1/series?from=0&to=4102444800000&step=1s".into(),
            "step",
        ),
        (
            "/api/v1/series?from=0&to=4102444800000&step=4102444801".into(),
            "step",
        ),
        (format!("/api/v1/series?step={i64_max}"), "step"),
        (format!("/api/v1/series?max_points={i64_max}"), "max_points"),
        (format!("/api/v1/series?max_points={u64_max}"), "max_points"),
        ("/api/v1/series?max_points=".into(), "max_points"),
        (
            "/api/v1/series?from=now-9223372036854775807ms".into(),
            "from",
        ),
        ("/api/v1/series?from=now-106751991167301d".into(), "from"),
        (
            "/api/v1/series?from=now-99999999999999999999999h".into(),
            "from",
        ),
        ("/api/v1/series?from=now-40000d".into(), "from"),
        (
            "/api/v1/series?to=now-1d1d1d1d1d1d1d9223372036854775807ms".into(),
            "to",
        ),
        ("/api/v1/series?from=%ff".into(), "from"),
        ("/api/v1/series?from=".into(), "from"),
        (format!("/api/v1/series?from={long}"), "from"),
        ("/api/v1/series?step=1m&step=1m".into(), "step"),
    ];
    for (path, parameter) in &cases {
        let response = aggregator.get(path).await;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let start = &text[..text.len().min(300)];
        assert_eq!(status, 400, "{path}: {start}");
        assert!(
            text.len() < 400,
            "{path}: the answer grew with the input: {text}"
        );
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["parameter"], *parameter, "{path}: {body}");
    }

    // The widest ranges still answer: InfluxDB is asked nothing past 2262.
    for path in [
        "/api/v1/series?from=0&to=4102444800000&max_points=1",
        "/api/v1/series?from=0&to=4102444800000&max_points=10000",
        "/api/v1/series?from=now-1s&step=4102444800",
    ] {
        let (status, body) = get_json(&aggregator, path).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    let widest = reqwest::get(format!(
        "{}/api/v1/stream?step=47482d&last=10000",
        aggregator.url
    ))
    .await
    .unwrap();
    let events = read_stream(widest, |events| !events.is_empty()).await;
    assert_eq!(
        events[0]["high"]["points"].as_array().unwrap().len(),
        1,
        "the buckets before 1970 are left out"
    );
    let path = format!("/api/v1/series?from={T0}&to={}&step=10s", T0 + 40_000);
    let (status, body) = get_json(&aggregator, &path).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(points(&body, "high")[0], (T0, 2, 13.0));
    let response = reqwest::get(format!("{}/api/v1/stream?step=1s&last=3", aggregator.url))
        .await
        .unwrap();
    let events = read_stream(response, |events| !events.is_empty()).await;
    assert_eq!(events[0]["high"]["points"].as_array().unwrap().len(), 3);
    aggregator.stop().await;
}

#[tokio::test]
async fn a_stream_past_max_streams_ends_the_oldest_and_each_ends_at_its_max_age() {
    let stores = Stores::start();
    stores.write(&KNOWN).await;
    let aggregator = stores
        .aggregator(&[
            "--max-streams",
            "1",
            "--stream-interval",
            "100ms",
            "--stream-max-age",
            "2s",
        ])
        .await;
    let stream = || reqwest::get(format!("{}/api/v1/stream?step=1s&last=3", aggregator.url));
    let ended = |reason: &'static str| {
        let aggregator = &aggregator;
        async move {
            aggregator
                .metric(&format!("streams_ended_total{{reason=\"{reason}\"}}"))
                .await
        }
    };
    let first = stream().await.unwrap();
    assert_eq!(first.status(), 200);
    let second = stream().await.unwrap();
    assert_eq!(second.status(), 200, "a new stream is never refused");

    // The oldest ends, having told the browser to come back soon.
    let rest = tokio::time::timeout(Duration::from_secs(10), first.text())
        .await
        .expect("the oldest stream ends")
        .unwrap();
    assert!(rest.starts_with("retry: 500"), "{rest}");
    assert_eq!(ended("evicted").await, 1.0);
    let (status, _) = get_json(&aggregator, "/api/v1/series?from=now-1m&step=1s").await;
    assert_eq!(status, 200, "queries are not held by the stream limit");

    // The newest runs until STREAM_MAX_AGE, live all along.
    let rest = tokio::time::timeout(Duration::from_secs(10), second.text())
        .await
        .expect("a stream ends at its max age")
        .unwrap();
    let series = rest.matches("event: series").count();
    assert!(series >= 10, "{series} updates in 2 s at 100 ms");
    assert_eq!(ended("max_age").await, 1.0);
    aggregator.stop().await;
}

/// With its one connection held by a query that waits on a lock, the
/// aggregator refuses a second query at once (MAX_QUERIES=1) instead of
/// queueing it, and /readyz still answers at once on its own connection.
#[tokio::test]
async fn a_busy_aggregator_refuses_instead_of_queueing_and_stays_ready() {
    use sqlx::Connection;

    let stores = Stores::start();
    stores.write(&KNOWN).await;
    let aggregator = stores
        .aggregator(&["--postgres-pool-size", "1", "--max-queries", "1"])
        .await;
    let path = format!("/api/v1/series?from={T0}&to={}&step=10s", T0 + 40_000);
    assert_eq!(get_json(&aggregator, &path).await.0, 200);
    assert_eq!(aggregator.get("/readyz").await.status(), 200);

    let mut locker = sqlx::PgConnection::connect(&stores.postgres.url())
        .await
        .unwrap();
    let mut lock = locker.begin().await.unwrap();
    sqlx::query("LOCK TABLE events_per_second IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let held = tokio::spawn({
        let url = format!("{}{path}", aggregator.url);
        async move { reqwest::get(url).await.unwrap().status().as_u16() }
    });
    // The held query has its place and the pool's one connection once
    // PostgreSQL shows the aggregator's query waiting for the lock.
    let waiting = eventually(Duration::from_secs(10), || async {
        stores
            .postgres
            .psql(
                "select count(*) from pg_stat_activity \
                 where wait_event_type = 'Lock' and query ilike '%from events_per_second%'",
            )
            .is_ok_and(|n| n != "0")
    })
    .await;
    assert!(waiting, "the held query never waited for the lock");

    let started = std::time::Instant::now();
    let refused = aggregator.get("/api/v1/totals").await;
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("too many queries"),
        "{body}"
    );
    let readyz = aggregator.get("/readyz").await;
    assert_eq!(readyz.status(), 200, "{:?}", readyz.text().await);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "neither waited for the held query: {:?}",
        started.elapsed()
    );
    assert_eq!(
        held.await.unwrap(),
        503,
        "the held query names the store that did not answer in time"
    );
    lock.rollback().await.unwrap();
    assert_eq!(get_json(&aggregator, &path).await.0, 200);
    aggregator.stop().await;
}

/// Events spread over eight days, every one stored twice (a redelivery):
/// each store's totals, read from its per-hour totals, count the events it
/// holds once each, whatever hours and days they fall in.
#[tokio::test]
async fn totals_count_every_stored_event_once_across_hours_and_days() {
    let stores = Stores::start();
    let events: Vec<Event> = (0..400)
        .map(|i| {
            Event::new(
                EventId::parse(&format!("spread-{i}")).unwrap(),
                EventTime::from_millis(T0 + i * 1_733_000).unwrap(),
                Amount::new((i % 10) as f64 + 0.5).unwrap(),
            )
        })
        .collect();
    let (high, low): (Vec<Event>, Vec<Event>) = events
        .iter()
        .cloned()
        .partition(|event| event.amount.value() > 5.0);
    for _ in 0..2 {
        stores.high.write(&logged(0, high.clone())).await.unwrap();
        stores.low.write(&logged(0, low.clone())).await.unwrap();
    }
    stores.low.rollups().refresh().await.unwrap();
    let stored = stores.postgres.psql("select count(*) from events").unwrap();
    assert_eq!(stored, high.len().to_string());

    let aggregator = stores.aggregator(&[]).await;
    let (status, totals) = get_json(&aggregator, "/api/v1/totals").await;
    assert_eq!(status, 200, "{totals}");
    // Halves add up exactly in any order.
    let sum = |events: &[Event]| events.iter().map(|e| e.amount.value()).sum::<f64>();
    assert_eq!(totals["high"]["count"], json!(high.len()));
    assert_eq!(totals["high"]["sum"], json!(sum(&high)));
    assert_eq!(totals["low"]["count"], json!(low.len()));
    assert_eq!(totals["low"]["sum"], json!(sum(&low)));
    let newest = |events: &[Event]| events.iter().map(|e| e.time.as_millis()).max();
    assert_eq!(totals["high"]["last_time"], json!(newest(&high)));
    assert_eq!(
        totals["low"]["last_time"],
        json!(newest(&low).map(|ms| ms / 1000 * 1000))
    );

    // Series of whole hours are read from the hours: the same counts and
    // sums as the events, hour by hour and two hours by two.
    let from = T0 / 3_600_000 * 3_600_000;
    let to = T0 + 400 * 1_733_000;
    for step_hours in [1, 2] {
        let step = step_hours * 3_600_000;
        let path = format!("/api/v1/series?from={from}&to={to}&step={step_hours}h");
        let (status, body) = get_json(&aggregator, &path).await;
        assert_eq!(status, 200, "{body}");
        for (series, events) in [("high", &high), ("low", &low)] {
            let mut expected = std::collections::BTreeMap::<i64, (u64, f64)>::new();
            for event in events.iter() {
                let bucket = expected
                    .entry(event.time.as_millis() / step * step)
                    .or_default();
                *bucket = (bucket.0 + 1, bucket.1 + event.amount.value());
            }
            let stored: Vec<(i64, u64, f64)> = points(&body, series)
                .into_iter()
                .filter(|p| p.1 > 0)
                .collect();
            let expected: Vec<(i64, u64, f64)> = expected
                .into_iter()
                .map(|(start, (count, sum))| (start, count, sum))
                .collect();
            assert_eq!(stored, expected, "{series} at {step_hours} h");
        }
    }

    // A consumer-low of an earlier release keeps no hours: the totals come
    // from the seconds then.
    stores
        .influx
        .query("streamproc", "DROP MEASUREMENT event_1h")
        .await;
    let (status, totals) = get_json(&aggregator, "/api/v1/totals").await;
    assert_eq!(status, 200, "{totals}");
    assert_eq!(totals["low"]["count"], json!(low.len()));
    assert_eq!(totals["low"]["sum"], json!(sum(&low)));
    assert_eq!(
        totals["low"]["last_time"],
        json!(newest(&low).map(|ms| ms / 1000 * 1000))
    );
    aggregator.stop().await;
}
