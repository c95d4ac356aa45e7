//! web-ui's own duties, against a real aggregator: the page's files, `/api`
//! forwarded with status, headers and body intact, a clear 502 when the
//! aggregator is away, and DISABLE. The page itself is tested in a browser
//! by the end-to-end test (crates/e2e).

use clap::Parser;
use serde_json::Value;
use testkit::InProcess;

async fn web_ui(args: &[&str]) -> InProcess {
    let config = web_ui::Config::try_parse_from(["web-ui"].iter().chain(args)).unwrap();
    InProcess::spawn(|listener, shutdown| web_ui::run(config, listener, shutdown)).await
}

/// An aggregator with DISABLE set: it answers without any store.
async fn quiet_aggregator() -> InProcess {
    let config = aggregator::Config::try_parse_from(["aggregator", "-x"]).unwrap();
    InProcess::spawn(|listener, shutdown| aggregator::run(config, listener, shutdown)).await
}

#[tokio::test]
async fn serves_the_page_and_its_charting_library() {
    let ui = web_ui(&["--aggregator-url", &testkit::unresponsive_peer()]).await;
    let page = ui.get("/").await;
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["cache-control"], "no-cache");
    assert!(page
        .text()
        .await
        .unwrap()
        .contains("<title>StreamProc</title>"));
    for (path, kind) in [
        ("/app.js", "text/javascript"),
        ("/vendor/uPlot.esm.js", "text/javascript"),
        ("/app.css", "text/css"),
    ] {
        let response = ui.get(path).await;
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.headers()["content-type"], kind, "{path}");
    }
    assert_eq!(ui.get("/no-such-file.js").await.status(), 404);
    assert_eq!(ui.get("/readyz").await.status(), 200);
    ui.stop().await;
}

#[tokio::test]
async fn forwards_api_requests_with_status_headers_and_body() {
    let aggregator = quiet_aggregator().await;
    let ui = web_ui(&["--aggregator-url", &format!("{}/", aggregator.url)]).await;

    let response = ui.get("/api").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["message"], aggregator::DISABLED_MESSAGE);

    // The query string travels too: the aggregator's 400 names the parameter.
    let response = ui.get("/api/v1/series?from=now-1h&step=fast").await;
    assert_eq!(response.status(), 400);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["parameter"], "step");

    let response = ui.get("/api/v1/totals").await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "5");
    ui.stop().await;
    aggregator.stop().await;
}

#[tokio::test]
async fn an_absent_aggregator_is_a_502_naming_it() {
    let ui = web_ui(&["--aggregator-url", "http://127.0.0.1:1"]).await;
    let response = ui.get("/api/v1/series").await;
    assert_eq!(response.status(), 502);
    let body: Value = response.json().await.unwrap();
    let message = body["message"].as_str().unwrap();
    assert!(
        message.starts_with("aggregator unavailable at http://127.0.0.1:1"),
        "{message}"
    );
    assert_eq!(ui.get("/").await.status(), 200, "the page still loads");
    ui.stop().await;
}

#[tokio::test]
async fn disabled_serves_the_page_without_forwarding() {
    let aggregator = quiet_aggregator().await;
    let ui = web_ui(&["-x", "--aggregator-url", &aggregator.url]).await;
    assert_eq!(ui.get("/").await.status(), 200);
    let response = ui.get("/api").await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("DISABLE"),
        "{body}"
    );
    let forwarded = aggregator
        .get("/metrics")
        .await
        .text()
        .await
        .unwrap()
        .contains("path=\"/api\"");
    assert!(!forwarded, "the aggregator was not asked");
    ui.stop().await;
    aggregator.stop().await;
}

#[tokio::test]
async fn not_ready_without_the_page_files() {
    let empty = testkit::temp_dir("web-ui-assets");
    let ui = web_ui(&["--assets-dir", empty.to_str().unwrap()]).await;
    let response = ui.get("/readyz").await;
    assert_eq!(response.status(), 503);
    let reason = response.text().await.unwrap();
    assert!(
        reason.contains("index.html") && reason.contains("npm ci"),
        "{reason}"
    );
    ui.stop().await;
}

/// Sends `target` as written, byte for byte (an HTTP client would resolve
/// its dot segments first), and answers the status code.
async fn raw_get_status(url: &str, target: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line for {target}: {answer}"))
}

#[tokio::test]
async fn the_forwarder_never_leaves_api() {
    let aggregator = quiet_aggregator().await;
    let ui = web_ui(&["--aggregator-url", &aggregator.url]).await;
    let asked = |path: &'static str| {
        let aggregator = &aggregator;
        async move {
            aggregator
                .metric(&format!(
                    "http_requests_total{{method=\"GET\",path=\"{path}\",status=\"200\"}}"
                ))
                .await
        }
    };
    let metrics_before = asked("/metrics").await;
    for target in [
        "/api/../metrics",
        "/api/%2e%2e/metrics",
        "/api/%2E%2e/metrics",
        "/api/.%2e/metrics",
        "/api/..%2fmetrics",
        "/api/..%2Fmetrics",
        "/api/..%5cmetrics",
        "/api/..\\metrics",
        "/api//metrics",
        "/api/v1/../../metrics",
        "/api/./../readyz",
    ] {
        let status = raw_get_status(&ui.url, target).await;
        assert!(matches!(status, 400 | 404), "{target} answered {status}");
    }
    // The only /metrics the aggregator answered since is the one read here.
    assert_eq!(asked("/metrics").await, metrics_before + 1.0);
    assert_eq!(asked("/readyz").await, 0.0);
    // What the page asks for still goes through.
    assert_eq!(raw_get_status(&ui.url, "/api").await, 200);
    ui.stop().await;
    aggregator.stop().await;
}

#[tokio::test]
async fn every_answer_carries_the_page_headers_and_json_is_compressed_on_request() {
    let aggregator = quiet_aggregator().await;
    let ui = web_ui(&["--aggregator-url", &aggregator.url]).await;
    for path in ["/", "/app.js", "/favicon.svg", "/api", "/no-such-file"] {
        let response = ui.get(path).await;
        let headers = response.headers();
        assert_eq!(
            headers["content-security-policy"],
            web_ui::CONTENT_SECURITY_POLICY,
            "{path}"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert_eq!(headers["referrer-policy"], "no-referrer", "{path}");
    }
    assert_eq!(
        ui.get("/favicon.svg").await.headers()["content-type"],
        "image/svg+xml"
    );

    // reqwest is built without decompression here, so the encoding shows.
    let client = reqwest::Client::new();
    for (path, asked, expected) in [
        (
            "/api/v1/series?from=now-1h&step=fast",
            Some("gzip"),
            Some("gzip"),
        ),
        ("/api/v1/series?from=now-1h&step=fast", None, None),
        ("/app.js", Some("gzip"), Some("gzip")),
    ] {
        let mut request = client.get(format!("{}{path}", ui.url));
        if let Some(asked) = asked {
            request = request.header("accept-encoding", asked);
        }
        let response = request.send().await.unwrap();
        let encoding = response
            .headers()
            .get("content-encoding")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(encoding.as_deref(), expected, "{path} asked {asked:?}");
    }
    ui.stop().await;
    aggregator.stop().await;
}
