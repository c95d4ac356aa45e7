//! web-ui in front of an aggregator whose API_TOKEN is set: with
//! AGGREGATOR_TOKEN_FILE it forwards `/api` with the token, so the page keeps
//! working, and never hands the token to the browser; without it the
//! aggregator's 401 comes through as it is.

use clap::Parser;
use serde_json::Value;
use testkit::InProcess;

const TOKEN: &str = "aggregator-0123456789abcdef";

async fn web_ui(args: &[&str]) -> InProcess {
    let config = web_ui::Config::try_parse_from(["web-ui"].iter().chain(args)).unwrap();
    assert!(!format!("{config:?}").contains(TOKEN));
    InProcess::spawn(|listener, shutdown| web_ui::run(config, listener, shutdown)).await
}

/// An aggregator with DISABLE set (it answers without any store) and a token.
async fn guarded_aggregator() -> InProcess {
    let config =
        aggregator::Config::try_parse_from(["aggregator", "-x", "--api-token", TOKEN]).unwrap();
    InProcess::spawn(|listener, shutdown| aggregator::run(config, listener, shutdown)).await
}

#[tokio::test]
async fn forwards_with_the_aggregators_token_and_keeps_it_from_the_browser() {
    let aggregator = guarded_aggregator().await;
    assert_eq!(aggregator.get("/api").await.status(), 401);

    let file = testkit::temp_dir("web-ui-token").join("token");
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    let ui = web_ui(&[
        "--aggregator-url",
        &aggregator.url,
        "--aggregator-token-file",
        file.to_str().unwrap(),
    ])
    .await;
    let response = ui.get("/api").await;
    assert_eq!(response.status(), 200);
    let headers = format!("{:?}", response.headers());
    assert!(!headers.contains(TOKEN), "{headers}");
    let body = response.text().await.unwrap();
    assert!(!body.contains(TOKEN), "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["message"], aggregator::DISABLED_MESSAGE);
    // The query string and the aggregator's own answers still come through.
    let response = ui.get("/api/v1/series?from=now-1h&step=fast").await;
    assert_eq!(response.status(), 400);
    // The page's files never held it either.
    for path in ["/", "/app.js"] {
        let text = ui.get(path).await.text().await.unwrap();
        assert!(!text.contains(TOKEN), "{path}");
    }
    // A browser's own Authorization header is not what reaches the
    // aggregator: web-ui sends the token it was given.
    let response = reqwest::Client::new()
        .get(format!("{}/api", ui.url))
        .header("authorization", "Bearer something-else")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    ui.stop().await;

    // Without the token the aggregator's 401 is passed on, with its body.
    let ui = web_ui(&["--aggregator-url", &aggregator.url]).await;
    let response = ui.get("/api/v1/totals").await;
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "unauthorized");
    // A wrong one is refused as well.
    ui.stop().await;
    let ui = web_ui(&[
        "--aggregator-url",
        &aggregator.url,
        "--aggregator-token",
        "aggregator-0123456789abcdeg",
    ])
    .await;
    assert_eq!(ui.get("/api").await.status(), 401);
    ui.stop().await;
    aggregator.stop().await;
}
