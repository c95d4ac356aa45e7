//! The producer binary against a real event-api that requires a token and a
//! real broker: with API_TOKEN_FILE it delivers every event; without the
//! token, or with a wrong one, nothing reaches the topic and the run fails
//! (a 401 is retried, as it is about the token, not the batch).

use std::process::Stdio;
use std::time::Duration;

use clap::Parser;
use testkit::{read_topic, Tansu};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "ingest-0123456789abcdef";

async fn producer(url: &str, env: &[(&str, &str)]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_event-producer"))
        .env_remove("API_TOKEN")
        .env_remove("API_TOKEN_FILE")
        .envs(env.iter().copied())
        .args([
            "--port", "0", "--url", url, "--count", "20", "--rate", "500",
        ])
        .args(["--interval", "20ms", "--drain-timeout", "500ms", "--echo"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .expect("the producer runs")
}

#[tokio::test]
async fn sends_the_token_from_its_file_and_nothing_without_it() {
    let broker = Tansu::start();
    broker.create_topic("one", 1).await;
    let dir = testkit::temp_dir("producer-token");
    let file = dir.join("token");
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    let config = event_api::Config::try_parse_from([
        "event-api",
        "--kafka-brokers",
        &broker.brokers(),
        "--kafka-topic",
        "one",
        "--api-token-file",
        file.to_str().unwrap(),
    ])
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/events", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let api = tokio::spawn(event_api::run(config, listener, shutdown.clone()));

    for env in [
        vec![],
        vec![("API_TOKEN", "ingest-0123456789abcdeg")],
        vec![("API_TOKEN", "")],
    ] {
        let output = producer(&url, &env).await;
        assert!(!output.status.success(), "{env:?}");
        assert!(output.stdout.is_empty(), "{env:?}: nothing acknowledged");
        let log = String::from_utf8_lossy(&output.stderr);
        assert!(!log.contains("0123456789abcde"), "{log}");
    }

    let output = producer(&url, &[("API_TOKEN_FILE", file.to_str().unwrap())]).await;
    assert!(output.status.success(), "{output:?}");
    let sent = std::str::from_utf8(&output.stdout).unwrap().lines().count();
    assert_eq!(sent, 20);

    // One partition: anything a refused run wrote would be on it too.
    let records = read_topic(
        &broker.brokers(),
        "one",
        20,
        Duration::from_secs(20),
        Duration::from_millis(500),
    )
    .await;
    assert_eq!(records.len(), 20, "only the run with the token wrote");
    shutdown.cancel();
    api.await.unwrap().unwrap();
}
