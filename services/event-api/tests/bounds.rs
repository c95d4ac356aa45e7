//! Bounded work per request, against a real tansu broker: a hostile client
//! (many slow requests) gets a clear answer, never holds the server, and a
//! normal event sent right after is accepted.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::Api;
use serde_json::Value;
use testkit::Tansu;

const EVENT: &str = r#"[{"amount":1}]"#;

/// A request whose head arrived and whose body trickles: it announces 100
/// bytes, sends 5, then nothing (a slow-loris client).
struct SlowBody {
    stream: TcpStream,
}

impl SlowBody {
    fn start(url: &str) -> Self {
        Self::send(url, "")
    }

    /// The same request with `Expect: 100-continue`, which the server
    /// answers (hyper does, on its own) when the handler starts reading the
    /// body: the signal that the request holds one of the
    /// MAX_CONCURRENT_REQUESTS places (see [`SlowBody::in_handler`]). The 5
    /// bytes go out at once all the same, as from a client that does not wait.
    fn start_expecting_continue(url: &str) -> Self {
        Self::send(url, "expect: 100-continue\r\n")
    }

    fn send(url: &str, extra_headers: &str) -> Self {
        let address = url.trim_start_matches("http://");
        let mut stream = TcpStream::connect(address).expect("event-api accepts connections");
        write!(
            stream,
            "POST /v1/events HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\n\
             content-length: 100\r\n{extra_headers}\r\n[{{\"am"
        )
        .unwrap();
        stream.flush().unwrap();
        Self { stream }
    }

    /// Waits for the server's `100 Continue` to a request made with
    /// [`SlowBody::start_expecting_continue`]: the handler is reading this
    /// body, so the request holds its place.
    async fn in_handler(self) -> Self {
        tokio::task::spawn_blocking(move || {
            let mut stream = self.stream;
            stream
                .set_read_timeout(Some(Duration::from_secs(20)))
                .unwrap();
            let mut head = Vec::new();
            let mut byte = [0; 1];
            while !head.ends_with(b"\r\n\r\n") {
                let read = stream.read(&mut byte).expect("100 Continue within 20 s");
                assert!(read > 0, "connection closed before 100 Continue");
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head);
            assert!(head.starts_with("HTTP/1.1 100 "), "{head}");
            Self { stream }
        })
        .await
        .unwrap()
    }

    /// The status and JSON body of the answer, once it comes.
    async fn answer(self) -> (u16, Value) {
        tokio::task::spawn_blocking(move || read_response(self.stream))
            .await
            .unwrap()
    }
}

/// Reads one HTTP/1.1 response with a Content-Length: the server may keep
/// the connection open after it.
fn read_response(mut stream: TcpStream) -> (u16, Value) {
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut buffer = Vec::new();
    let mut chunk = [0; 4096];
    loop {
        let text = String::from_utf8_lossy(&buffer).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let head = text[..end].to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .map(|value| value.trim().parse().unwrap())
                .unwrap_or(0);
            if buffer.len() >= end + 4 + length {
                let status = head[9..12].parse().unwrap();
                let body = serde_json::from_slice(&buffer[end + 4..end + 4 + length]).unwrap();
                return (status, body);
            }
        }
        let read = stream.read(&mut chunk).expect("an answer within 20 s");
        assert!(read > 0, "connection closed before a whole answer: {text}");
        buffer.extend_from_slice(&chunk[..read]);
    }
}

#[tokio::test]
async fn past_max_concurrent_requests_is_503_slow_bodies_408_probes_answer_then_events_flow() {
    let broker = Tansu::start();
    let api = Api::start(
        &broker.brokers(),
        "events",
        &[
            "--max-concurrent-requests",
            "2",
            "--body-read-timeout",
            "2s",
        ],
    )
    .await;
    api.wait_ready().await;
    assert_eq!(api.post("application/json", EVENT).await.status(), 200);

    let slow = [
        SlowBody::start_expecting_continue(&api.url),
        SlowBody::start_expecting_continue(&api.url),
    ];
    let started = Instant::now();
    // Both slow requests must be in the handler before the third arrives.
    let [first, second] = slow;
    let slow = [first.in_handler().await, second.in_handler().await];

    let shed = api.post("application/json", EVENT).await;
    assert_eq!(
        shed.status(),
        503,
        "a third request while two are in progress"
    );
    assert_eq!(shed.headers()["retry-after"], "1");
    let body: Value = shed.json().await.unwrap();
    assert_eq!(body["error"], "overloaded", "{body}");

    let probe = Instant::now();
    assert_eq!(api.service.get("/readyz").await.status(), 200);
    assert_eq!(api.service.get("/healthz").await.status(), 200);
    assert!(
        probe.elapsed() < Duration::from_secs(1),
        "probes wait behind no ingest request"
    );

    for request in slow {
        let (status, body) = request.answer().await;
        assert_eq!(status, 408, "{body}");
        assert_eq!(body["error"], "body_timeout", "{body}");
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(6),
        "answered after the 2 s body timeout, not before and not much later: {waited:?}"
    );

    assert_eq!(
        api.post("application/json", EVENT).await.status(),
        200,
        "the slots are free again"
    );
    assert_eq!(api.service.metric("requests_shed_total").await, 1.0);
    assert_eq!(api.service.metric("body_timeouts_total").await, 2.0);
    api.stop().await;
}

#[tokio::test]
async fn a_request_past_request_timeout_is_503_then_events_flow() {
    let broker = Tansu::start();
    // The overall timeout shorter than the body timeout, so that a slow body
    // runs into it.
    let api = Api::start(
        &broker.brokers(),
        "events",
        &["--request-timeout", "1s", "--body-read-timeout", "30s"],
    )
    .await;
    api.wait_ready().await;

    let started = Instant::now();
    let (status, body) = SlowBody::start(&api.url).answer().await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "request_timeout", "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered after about 1 s: {:?}",
        started.elapsed()
    );

    assert_eq!(api.post("application/json", EVENT).await.status(), 200);
    assert_eq!(api.service.metric("request_timeouts_total").await, 1.0);
    assert_eq!(api.service.metric("events_in_flight").await, 0.0);
    api.stop().await;
}

#[tokio::test]
async fn hostile_bodies_get_4xx_and_the_next_event_is_accepted() {
    let broker = Tansu::start();
    let api = Api::start(&broker.brokers(), "events", &["--max-body-bytes", "1000"]).await;
    api.wait_ready().await;

    let too_big = format!("[{}]", vec![r#"{"amount":1}"#; 200].join(","));
    for (content_type, body, status, code) in [
        ("application/json", too_big.as_str(), 413, "body_too_large"),
        ("application/json", "[]", 400, "no_events"),
        ("application/json", "", 400, "malformed_body"),
        ("text/plain", "", 400, "no_events"),
        ("application/xml", EVENT, 415, "unsupported_media_type"),
    ] {
        let response = api.post(content_type, body).await;
        assert_eq!(response.status(), status, "{content_type} {body:?}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["error"], code, "{content_type} {body:?}");
    }
    assert_eq!(api.post("application/json", EVENT).await.status(), 200);
    api.stop().await;
}
