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
