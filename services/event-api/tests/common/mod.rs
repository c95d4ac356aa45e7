#![allow(dead_code)] // each test file uses a different part of this module
//! event-api in-process on a free port, against a given broker.

use clap::Parser;
use testkit::InProcess;

pub struct Api {
    pub service: InProcess,
    pub url: String,
}

impl Api {
    pub async fn start(brokers: &str, topic: &str, extra: &[&str]) -> Self {
        let mut args = vec![
            "event-api",
            "--kafka-brokers",
            brokers,
            "--kafka-topic",
            topic,
        ];
        args.extend_from_slice(extra);
        let config = event_api::Config::try_parse_from(args).expect("valid test configuration");
        let service =
            InProcess::spawn(|listener, shutdown| event_api::run(config, listener, shutdown)).await;
        Self {
            url: service.url.clone(),
            service,
        }
    }

    /// Waits until `/readyz` answers 200 (Kafka answers and the topic exists).
    pub async fn wait_ready(&self) {
        let ready = testkit::eventually(std::time::Duration::from_secs(30), || async {
            self.service.get("/readyz").await.status() == 200
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
        self.service.stop().await;
    }
}
