//! The event-api side of one probe: is it ready (its `/readyz` says why
//! not, naming Kafka when the broker is down), and its counters of events
//! accepted and rejected and of requests shed with 429 or 503, from its
//! `/metrics`.
//!
//! Every address event-api's host resolves to is asked, and the counters are
//! summed: behind a headless Service that is every replica. Behind a
//! ClusterIP Service each probe reaches one replica, so readiness is that
//! replica's and the rates are left out when a counter goes backwards.

use std::time::Duration;
use streamproc_event::names::{
    EVENTS_ACCEPTED_METRIC, EVENTS_REJECTED_METRIC, HTTP_REQUESTS_METRIC,
};
use streamproc_kit::metrics::samples;

use futures_util::future::join_all;
use reqwest::Url;

use super::replicas::{Readiness, Replicas};

/// What event-api's replicas answered in one probe.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApiSample {
    pub readiness: Readiness,
    /// Counters summed over the replicas whose `/metrics` answered; `None`
    /// when none did.
    pub counters: Option<ApiCounters>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ApiCounters {
    pub accepted: f64,
    pub rejected: f64,
    /// Ingest requests answered 429 or 503.
    pub shed: f64,
}

impl std::ops::Add for ApiCounters {
    type Output = Self;
    fn add(self, other: Self) -> Self {
        Self {
            accepted: self.accepted + other.accepted,
            rejected: self.rejected + other.rejected,
            shed: self.shed + other.shed,
        }
    }
}

pub struct ApiProbe {
    replicas: Replicas,
}

impl ApiProbe {
    pub fn new(base: Url, timeout: Duration) -> anyhow::Result<Self> {
        Ok(Self {
            replicas: Replicas::new(base, timeout)?,
        })
    }

    pub async fn sample(&self) -> ApiSample {
        let urls = match self.replicas.find().await {
            Ok(urls) => urls,
            Err(error) => {
                return ApiSample {
                    readiness: Readiness::not_found(&error),
                    counters: None,
                }
            }
        };
        let answers = join_all(
            urls.iter()
                .map(|url| async { tokio::join!(self.replicas.ready(url), self.counters(url)) }),
        )
        .await;
        let mut sample = ApiSample::default();
        for (ready, counters) in answers {
            sample.readiness.add(ready);
            if let Some(counters) = counters {
                sample.counters = Some(sample.counters.unwrap_or_default() + counters);
            }
        }
        sample
    }

    /// One replica's counters, from its `/metrics`.
    async fn counters(&self, base: &Url) -> Option<ApiCounters> {
        let url = base.join("metrics").ok()?;
        let response = self.replicas.client().get(url).send().await.ok()?;
        Some(parse_counters(&response.text().await.ok()?))
    }
}

/// The counters in event-api's Prometheus text: `events_accepted_total`,
/// `events_rejected_total`, and the ingest requests answered 429 or 503
/// (`http_requests_total` by status, the probes' own 503s left out).
pub fn parse_counters(text: &str) -> ApiCounters {
    let accepted = format!("{EVENTS_ACCEPTED_METRIC}_total");
    let rejected = format!("{EVENTS_REJECTED_METRIC}_total");
    let requests = format!("{HTTP_REQUESTS_METRIC}_total");
    let mut counters = ApiCounters::default();
    for sample in samples(text) {
        if sample.name == accepted {
            counters.accepted += sample.value;
        } else if sample.name == rejected {
            counters.rejected += sample.value;
        } else if sample.name == requests {
            let path = sample.label("path").unwrap_or_default();
            let ingest = !matches!(path, "/readyz" | "/healthz" | "/metrics");
            if ingest && matches!(sample.label("status"), Some("429" | "503")) {
                counters.shed += sample.value;
            }
        }
    }
    counters
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_from_event_apis_metrics() {
        let text = r#"# HELP events_accepted Events acknowledged by Kafka and answered 200
# TYPE events_accepted counter
events_accepted_total 1200
events_rejected_total 3
http_requests_total{method="POST",path="/",status="200"} 40
http_requests_total{method="POST",path="/v1/events",status="429"} 5
http_requests_total{method="POST",path="/",status="503"} 2
http_requests_total{method="GET",path="/readyz",status="503"} 9
# EOF"#;
        assert_eq!(
            parse_counters(text),
            ApiCounters {
                accepted: 1200.0,
                rejected: 3.0,
                shed: 7.0
            }
        );
        assert_eq!(parse_counters("garbage\n{{{ x"), ApiCounters::default());
    }
}
