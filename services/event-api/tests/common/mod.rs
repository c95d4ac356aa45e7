#![allow(dead_code)] // each test file uses a different part of this module
//! Starts event-api in-process on a free port, against a given broker.

use clap::Parser;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub struct Api {
    pub url: String,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Api {
    pub async fn start(brokers: &str, topic: &str, extra: &[&str]) -> Self {
        streamproc::telemetry::init_for_tests();
        let mut args = vec![
            "event-api",
            "--kafka-brokers",
            brokers,
            "--kafka-topic",
            topic,
        ];
        args.extend_from_slice(extra);
        let config = event_api::Config::try_parse_from(args).expect("valid test configuration");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(event_api::run(config, listener, shutdown.clone()));
        Self {
            url,
            shutdown,
            task,
        }
    }

    /// Waits until `/readyz` answers 200 (Kafka answers and the topic exists).
    pub async fn wait_ready(&self) {
        let url = format!("{}/readyz", self.url);
        let ready = testkit::eventually(std::time::Duration::from_secs(30), || async {
            matches!(reqwest::get(&url).await, Ok(r) if r.status() == 200)
        })
        .await;
        assert!(ready, "event-api did not become ready");
    }

    pub async fn post(&self, content_type: &str, body: impl Into<String>) -> reqwest::Response {
        reqwest::Client::new()
            .post(format!("{}/v1/events", self.url))
            .header("content-type", content_type)
            .body(body.into())
            .send()
            .await
            .expect("event-api answers")
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }
}
