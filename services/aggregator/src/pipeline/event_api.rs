//! The event-api side of one probe: is it ready (its `/readyz` says why
//! not, naming Kafka when the broker is down), and its counters of events
//! accepted and rejected and of requests shed with 429 or 503, from its
//! `/metrics`.
//!
//! Every address event-api's host resolves to is asked, and the counters are
//! summed: behind a headless Service that is every replica. Behind a
//! ClusterIP Service each probe reaches one replica, so readiness is that
//! replica's and the rates are left out when a counter goes backwards.

use std::net::SocketAddr;
use std::time::Duration;
use streamproc_event::names::{
    EVENTS_ACCEPTED_METRIC, EVENTS_REJECTED_METRIC, HTTP_REQUESTS_METRIC,
};
use streamproc_kit::metrics::samples;

use futures_util::future::join_all;
use reqwest::Url;

use super::failure::Failure;

/// The most addresses probed at once: a bound on a DNS answer.
const MAX_ADDRESSES: usize = 32;

/// What event-api's replicas answered in one probe.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApiSample {
    /// Addresses probed.
    pub replicas: usize,
    /// Addresses that answered `/readyz` with 200.
    pub ready: usize,
    /// Why the others are not ready (the first reason).
    pub not_ready: Option<String>,
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
    base: Url,
    client: reqwest::Client,
}

impl ApiProbe {
    pub fn new(base: Url, timeout: Duration) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()?;
        Ok(Self { base, client })
    }

    pub async fn sample(&self) -> ApiSample {
        let addresses = match self.addresses().await {
            Ok(addresses) if !addresses.is_empty() => addresses,
            Ok(_) => return unreachable_api(format!("{} resolves to nothing", self.host())),
            Err(error) => {
                return unreachable_api(format!("cannot resolve {}: {error}", self.host()))
            }
        };
        let answers = join_all(addresses.iter().map(|address| self.replica(*address))).await;
        let mut sample = ApiSample {
            replicas: answers.len(),
            ..ApiSample::default()
        };
        for (ready, counters) in answers {
            match ready {
                Ok(()) => sample.ready += 1,
                Err(reason) => {
                    sample.not_ready.get_or_insert_with(|| reason.to_string());
                }
            }
            if let Some(counters) = counters {
                sample.counters = Some(sample.counters.unwrap_or_default() + counters);
            }
        }
        sample
    }

    fn host(&self) -> &str {
        self.base.host_str().unwrap_or_default()
    }

    async fn addresses(&self) -> std::io::Result<Vec<SocketAddr>> {
        let port = self.base.port_or_known_default().unwrap_or(80);
        let mut addresses: Vec<SocketAddr> = tokio::net::lookup_host((self.host(), port))
            .await?
            .collect();
        addresses.sort_unstable();
        addresses.dedup();
        addresses.truncate(MAX_ADDRESSES);
        Ok(addresses)
    }

    /// One replica: ready or why not, and its counters.
    async fn replica(&self, address: SocketAddr) -> (Result<(), Failure>, Option<ApiCounters>) {
        let mut base = self.base.clone();
        // By address, so that each replica behind one name is asked itself;
        // an https name keeps its name (certificates name hosts).
        if base.scheme() == "http" {
            let _ = base.set_ip_host(address.ip());
        }
        let ready =
            async {
                let url = base.join("readyz").map_err(|e| Failure::from_error(&e))?;
                let response =
                    self.client.get(url).send().await.map_err(|e| {
                        Failure::from(format!("does not answer: {}", without_url(e)))
                    })?;
                if response.status().is_success() {
                    return Ok(());
                }
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                Err(Failure::from(if body.trim().is_empty() {
                    format!("/readyz answered {status}")
                } else {
                    first_chars(body.trim(), 300)
                }))
            };
        let counters = async {
            let url = base.join("metrics").ok()?;
            let text = self.client.get(url).send().await.ok()?.text().await.ok()?;
            Some(parse_counters(&text))
        };
        tokio::join!(ready, counters)
    }
}

fn unreachable_api(reason: String) -> ApiSample {
    ApiSample {
        replicas: 0,
        ready: 0,
        not_ready: Some(reason),
        counters: None,
    }
}

/// reqwest's message without the URL it adds (an address the reader did not
/// configure).
fn without_url(error: reqwest::Error) -> String {
    let mut message = if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        "connection refused or unreachable".to_owned()
    } else {
        error.without_url().to_string()
    };
    message.truncate(300);
    message
}

fn first_chars(text: &str, n: usize) -> String {
    text.chars().take(n).collect()
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
