//! Proof one event at a time, through the whole pipeline: every event
//! event-api acknowledges is traced, from its receipt, to the store and the
//! Kafka record that hold it; dead letters are listed newest first and
//! found by event id; a refused event whose cause was fixed goes back with
//! `scripts/requeue.py` and is stored once however often it is sent.

mod common;

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use streamproc_event::EventTime;
use testkit::{eventually, InProcess};

/// Ten events, five each side of the watermark.
const TRACED: usize = 10;
/// Records that are not events, written straight to the topic.
const MALFORMED: usize = 3;
/// What the test's constraint makes TimescaleDB refuse.
const REFUSED_AMOUNT: f64 = 13.0;

async fn json_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn trace(aggregator: &InProcess, id: &str, time: Option<i64>) -> (u16, Value) {
    let query = time.map_or(String::new(), |t| format!("?time={t}"));
    json_of(aggregator.get(&format!("/api/v1/events/{id}{query}")).await).await
}

/// Runs scripts/requeue.py for the dead letters at `places`, without
/// blocking the services that run on this test's runtime.
async fn requeue(
    aggregator: &InProcess,
    event_api: &InProcess,
    places: &[String],
) -> (bool, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/requeue.py");
    let output = tokio::process::Command::new("python3")
        .arg(script)
        .args([
            "--aggregator",
            &aggregator.url,
            "--event-api",
            &event_api.url,
        ])
        .args(places)
        .output()
        .await
        .expect("python3 runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// The reconciliation of the minute either side of `at`, by the second.
async fn reconcile(aggregator: &InProcess, at: i64) -> (u16, Value) {
    let path = format!(
        "/api/v1/reconcile?from={}&to={}&step=1s",
        at - 60_000,
        at + 60_000
    );
    json_of(aggregator.get(&path).await).await
}

/// Waits up to `limit` for the reconciliation to reach `status`, and
/// returns the answer that did (or the last one).
async fn reconciled(aggregator: &InProcess, at: i64, status: &str, limit: Duration) -> Value {
    let reached = eventually(limit, || async {
        reconcile(aggregator, at).await.1["status"] == status
    })
    .await;
    let (code, answer) = reconcile(aggregator, at).await;
    assert!(
        reached && code == 200,
        "not {status} within {limit:?}: {answer}"
    );
    answer
}

fn place(letter: &Value) -> String {
    format!("{}:{}", letter["partition"], letter["offset"])
}

#[tokio::test]
async fn every_acknowledged_event_is_traced_to_its_record_and_fixed_dead_letters_go_back() {
    let common::Pipeline {
        broker,
        postgres,
        event_api,
        high,
        aggregator,
        // Bound, not `..`: a field left out would be dropped (stopped) here.
        influx: _influx,
        low,
        web_ui: _web_ui,
    } = common::start_pipeline(&[]).await;
    let brokers = broker.brokers();

    // consumer-high creates its tables when its store is first asked for
    // (its readiness probe); then TimescaleDB is made to refuse one amount,
    // as a store may refuse data.
    let tables = eventually(Duration::from_secs(30), || async {
        high.get("/readyz").await.status() == 200
    })
    .await;
    assert!(tables, "consumer-high did not create its tables");
    postgres
        .psql(&format!(
            "ALTER TABLE events ADD CONSTRAINT refuse_13 CHECK (amount <> {REFUSED_AMOUNT})"
        ))
        .unwrap();

    let posted_at = EventTime::now().as_millis();
    let mut events: Vec<Value> = (0..TRACED)
        .map(|i| json!({"id": format!("traced-{i}"), "time": posted_at - i as i64, "amount": i as f64 + 0.5}))
        .collect();
    events.push(json!({"id": "refused-1", "time": posted_at, "amount": REFUSED_AMOUNT}));
    let answer = reqwest::Client::new()
        .post(format!("{}/?receipts=true", event_api.url))
        .json(&events)
        .send()
        .await
        .unwrap();
    let (status, answer) = json_of(answer).await;
    assert_eq!(status, 200, "{answer}");
    let receipts = answer["receipts"].as_array().unwrap().clone();
    assert_eq!(receipts.len(), TRACED + 1);

    let malformed: Vec<(String, Vec<u8>)> = (0..MALFORMED)
        .map(|i| (format!("bad-{i}"), format!("not json {i}").into_bytes()))
        .collect();
    testkit::produce(&brokers, "events", &malformed).await;

    // Each acknowledged event, traced from its receipt: the store its
    // amount routes it to, the very record event-api wrote, when written.
    for (i, receipt) in receipts.iter().take(TRACED).enumerate() {
        let id = receipt["id"].as_str().unwrap();
        let time = receipt["time"].as_i64().unwrap();
        let stored = eventually(Duration::from_secs(30), || async {
            trace(&aggregator, id, Some(time)).await.0 == 200
        })
        .await;
        assert!(
            stored,
            "{id} was not found: {:?}",
            trace(&aggregator, id, Some(time)).await
        );
        let (_, found) = trace(&aggregator, id, Some(time)).await;
        let stored = found["stored"].as_array().unwrap();
        assert_eq!(stored.len(), 1, "in exactly one store: {found}");
        let amount = i as f64 + 0.5;
        let store = if amount > 5.0 {
            "timescaledb"
        } else {
            "influxdb"
        };
        assert_eq!(stored[0]["store"], store, "{found}");
        assert_eq!(stored[0]["amount"], amount, "{found}");
        assert_eq!(stored[0]["time"], time, "{found}");
        assert_eq!(stored[0]["partition"], receipt["partition"], "{found}");
        assert_eq!(stored[0]["offset"], receipt["offset"], "{found}");
        let written = stored[0]["stored_at"].as_i64().unwrap();
        assert!(written >= posted_at - 1_000, "{found}");
        assert!(
            found["dead_letters"].as_array().unwrap().is_empty(),
            "{found}"
        );
        // TimescaleDB finds its events by id alone; InfluxDB needs the time.
        let (status, without_time) = trace(&aggregator, id, None).await;
        if store == "timescaledb" {
            assert_eq!((status, &without_time["stored"]), (200, &found["stored"]));
        } else {
            assert_eq!(status, 404, "{without_time}");
            assert_eq!(without_time["error"], "not_found");
            assert!(
                without_time["message"].as_str().unwrap().contains("?time="),
                "{without_time}"
            );
        }
    }

    // The dead letters: three malformed records and the refused event,
    // newest first, a page at a time.
    let all_in = eventually(Duration::from_secs(30), || async {
        let (_, page) = json_of(aggregator.get("/api/v1/dead-letters").await).await;
        page["dead_letters"].as_array().map_or(0, Vec::len) == MALFORMED + 1
            && page["caught_up"] == true
    })
    .await;
    assert!(
        all_in,
        "{:?}",
        json_of(aggregator.get("/api/v1/dead-letters").await).await
    );
    let (status, first) = json_of(aggregator.get("/api/v1/dead-letters?limit=3").await).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["dead_letters"].as_array().unwrap().len(), 3);
    assert_eq!(
        (first["kept"].as_u64(), first["in_topic"].as_i64()),
        (Some(4), Some(4))
    );
    let next = first["next"].as_str().expect("a next page");
    let (_, second) = json_of(aggregator.get(next).await).await;
    assert_eq!(
        second["dead_letters"].as_array().unwrap().len(),
        1,
        "{second}"
    );
    assert!(second["next"].is_null(), "{second}");
    let letters: Vec<Value> = first["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["dead_letters"].as_array().unwrap())
        .cloned()
        .collect();
    let times: Vec<i64> = letters
        .iter()
        .map(|l| l["time"].as_i64().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {times:?}"
    );
    let mut keys: Vec<&str> = letters.iter().map(|l| l["key"].as_str().unwrap()).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["bad-0", "bad-1", "bad-2", "refused-1"]);
    for letter in &letters {
        assert_eq!(letter["source"]["topic"], "events", "{letter}");
        let (_, one) = json_of(
            aggregator
                .get(&format!(
                    "/api/v1/dead-letters/{}/{}",
                    letter["partition"], letter["offset"]
                ))
                .await,
        )
        .await;
        assert_eq!(&one, letter);
    }

    // Only the refused event names a store.
    for letter in &letters {
        let refused_by = if letter["key"] == "refused-1" {
            json!("timescaledb")
        } else {
            Value::Null
        };
        assert_eq!(letter["refused_by"], refused_by, "{letter}");
    }

    // Reconciled: every accepted event is stored, or dead-lettered by the
    // store that refused it; the malformed records were never accepted.
    let answer = reconciled(&aggregator, posted_at, "accounted", Duration::from_secs(10)).await;
    assert_eq!(answer["accepted"], TRACED + 1, "{answer}");
    assert_eq!(
        answer["summary"],
        format!("all {} events accounted for", TRACED + 1)
    );
    let high = &answer["timescaledb"];
    assert_eq!(
        (&high["accepted"], &high["stored"], &high["dead_lettered"]),
        (&json!(6), &json!(5), &json!(1)),
        "{answer}"
    );
    assert_eq!(answer["influxdb"]["stored"], 5, "{answer}");
    for (query, parameter) in [
        ("step=abc", "step"),
        ("from=yesterday", "from"),
        ("from=5&to=1", "from"),
        ("step=1s&max_points=3", "step"),
    ] {
        let (status, body) =
            json_of(aggregator.get(&format!("/api/v1/reconcile?{query}")).await).await;
        assert_eq!(
            (status, body["parameter"].as_str()),
            (400, Some(parameter)),
            "{query}: {body}"
        );
    }

    // Found by id: why each was dead-lettered.
    let (status, bad) = trace(&aggregator, "bad-1", None).await;
    assert_eq!(status, 200, "{bad}");
    assert_eq!(bad["dead_letters"][0]["payload"], "not json 1");
    let refused_receipt = &receipts[TRACED];
    let refused_time = refused_receipt["time"].as_i64();
    let (status, refused) = trace(&aggregator, "refused-1", refused_time).await;
    assert_eq!(status, 200, "{refused}");
    assert!(
        refused["stored"].as_array().unwrap().is_empty(),
        "{refused}"
    );
    let refused_letter = refused["dead_letters"][0].clone();
    assert!(
        refused_letter["reason"]
            .as_str()
            .unwrap()
            .contains("refuse_13"),
        "{refused_letter}"
    );
    assert_eq!(
        refused_letter["source"]["partition"],
        refused_receipt["partition"]
    );
    assert_eq!(
        refused_letter["source"]["offset"],
        refused_receipt["offset"]
    );

    // Nowhere, and bad questions.
    let (status, nowhere) = trace(&aggregator, "nowhere", Some(posted_at)).await;
    assert_eq!(status, 404, "{nowhere}");
    assert!(
        nowhere["message"]
            .as_str()
            .unwrap()
            .starts_with("not found in either store or the dead letters"),
        "{nowhere}"
    );
    for (path, parameter) in [
        (format!("/api/v1/events/{}", "x".repeat(129)), "id"),
        ("/api/v1/events/x?time=abc".to_owned(), "time"),
        ("/api/v1/events/x?time=1&time=2".to_owned(), "time"),
        (
            "/api/v1/events/x?time=99999999999999999999".to_owned(),
            "time",
        ),
        ("/api/v1/dead-letters?limit=0".to_owned(), "limit"),
        ("/api/v1/dead-letters?limit=501".to_owned(), "limit"),
        ("/api/v1/dead-letters?before=yesterday".to_owned(), "before"),
        ("/api/v1/dead-letters/x/1".to_owned(), "partition"),
        ("/api/v1/dead-letters/0/-1".to_owned(), "offset"),
    ] {
        let (status, body) = json_of(aggregator.get(&path).await).await;
        assert_eq!(
            (status, body["parameter"].as_str()),
            (400, Some(parameter)),
            "{path}: {body}"
        );
    }

    // Sent back: a record that never was an event is refused by event-api
    // and nothing is sent; the refused event, once the store takes it
    // again, is stored once though it is sent twice.
    let bad_letter = letters.iter().find(|l| l["key"] == "bad-0").unwrap();
    let accepted_before = event_api.metric("events_accepted_total").await;
    let (ok, output) = requeue(&aggregator, &event_api, &[place(bad_letter)]).await;
    assert!(!ok && output.contains("400"), "{output}");
    assert_eq!(
        event_api.metric("events_accepted_total").await,
        accepted_before
    );
    postgres
        .psql("ALTER TABLE events DROP CONSTRAINT refuse_13")
        .unwrap();
    for _ in 0..2 {
        let (ok, output) = requeue(&aggregator, &event_api, &[place(&refused_letter)]).await;
        assert!(ok && output.contains("refused-1"), "{output}");
    }
    let back = eventually(Duration::from_secs(30), || async {
        let (_, found) = trace(&aggregator, "refused-1", None).await;
        found["stored"].as_array().is_some_and(|s| s.len() == 1)
    })
    .await;
    assert!(back, "{:?}", trace(&aggregator, "refused-1", None).await);
    let (_, found) = trace(&aggregator, "refused-1", None).await;
    assert_eq!(found["stored"][0]["store"], "timescaledb");
    assert_eq!(
        found["dead_letters"].as_array().unwrap().len(),
        1,
        "{found}"
    );
    let committed = broker
        .wait_committed(
            "streamproc-consumer-high",
            "events",
            TRACED + 1 + MALFORMED + 2,
            Duration::from_secs(30),
        )
        .await;
    assert!(committed, "consumer-high read everything sent");
    assert_eq!(
        postgres
            .psql("SELECT count(*) FROM events WHERE id = 'refused-1'")
            .unwrap(),
        "1",
        "stored once though sent back twice"
    );

    // Sent back and stored, the refused event is no longer counted as
    // dead-lettered, though its letter stays listed.
    let answer = reconciled(&aggregator, posted_at, "accounted", Duration::from_secs(10)).await;
    let high = &answer["timescaledb"];
    assert_eq!(
        (&high["accepted"], &high["stored"], &high["dead_lettered"]),
        (&json!(6), &json!(6), &json!(0)),
        "{answer}"
    );

    // One row deleted by hand: within 5 s, a difference of exactly 1 in
    // exactly its bucket, and the line says where.
    let deleted = &receipts[TRACED - 1];
    let deleted_time = deleted["time"].as_i64().unwrap();
    postgres
        .psql(&format!(
            "DELETE FROM events WHERE id = '{}'",
            deleted["id"].as_str().unwrap()
        ))
        .unwrap();
    let answer = reconciled(
        &aggregator,
        posted_at,
        "unaccounted",
        Duration::from_secs(5),
    )
    .await;
    let uneven: Vec<&Value> = answer["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["timescaledb"]["difference"] != 0 || b["influxdb"]["difference"] != 0)
        .collect();
    assert_eq!(uneven.len(), 1, "{answer}");
    assert_eq!(uneven[0]["time"], deleted_time - deleted_time % 1000);
    assert_eq!(uneven[0]["timescaledb"]["difference"], 1, "{answer}");
    assert_eq!(answer["timescaledb"]["difference"], 1, "{answer}");
    let summary = answer["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("1 event missing from timescaledb (1 at "),
        "{summary}"
    );

    // With consumer-low stopped, a new low event is in flight, not
    // missing: the reconciliation waits for the group to catch up rather
    // than report a loss, whatever else it finds.
    low.stop().await;
    let answer = reqwest::Client::new()
        .post(&event_api.url)
        .json(&json!([{"id": "waiting-1", "time": posted_at, "amount": 1.5}]))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    // consumer-high reads the low event too (for the ledger) and commits
    // past it, in the background: until then both groups are behind. Wait
    // for the state this checks, consumer-low alone behind.
    let only_low_behind = eventually(Duration::from_secs(10), || async {
        let (_, answer) = reconcile(&aggregator, posted_at).await;
        answer["status"] == "in_flight" && answer["lag_high"] == 0
    })
    .await;
    let answer = reconciled(&aggregator, posted_at, "in_flight", Duration::from_secs(10)).await;
    assert!(only_low_behind, "consumer-high never caught up: {answer}");
    assert!(
        answer["summary"]
            .as_str()
            .unwrap()
            .ends_with("consumer-low is 1 records behind"),
        "{answer}"
    );
    assert_eq!(answer["lag_low"], 1, "{answer}");
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (_, again) = reconcile(&aggregator, posted_at).await;
        assert_eq!(
            again["status"], "in_flight",
            "never missing while behind: {again}"
        );
    }
}
