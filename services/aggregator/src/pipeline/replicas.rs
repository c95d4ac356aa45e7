//! Finding every replica of a service by its name. A name resolves to one
//! address per pod behind a headless Kubernetes Service (the chart gives
//! event-api and both consumers one, `<service>-pods`), to one virtual
//! address behind an ordinary Service, and to itself on one machine; each
//! address found is probed on its own, so two replicas are seen as two.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::future::join_all;
use reqwest::Url;

use super::failure::Failure;

/// The most addresses probed at once: a bound on a DNS answer.
const MAX_ADDRESSES: usize = 32;

/// A service's replicas, found through the host of its base URL.
pub struct Replicas {
    base: Url,
    client: reqwest::Client,
}

/// Why no replica was found.
#[derive(Debug, thiserror::Error)]
pub enum FindError {
    #[error("{host} resolves to nothing")]
    NoAddress { host: String },
    #[error("cannot resolve {host}")]
    Resolve {
        host: String,
        #[source]
        source: std::io::Error,
    },
}

/// How many replicas answered `/readyz`, in one probe.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Readiness {
    /// Addresses probed.
    pub replicas: usize,
    /// Addresses that answered `/readyz` with 200.
    pub ready: usize,
    /// Why the others are not ready (the first reason), or why none was
    /// found.
    pub not_ready: Option<String>,
}

impl Readiness {
    pub fn none_found(reason: String) -> Self {
        Self {
            replicas: 0,
            ready: 0,
            not_ready: Some(reason),
        }
    }

    /// No replica, because none was found; the reason with its causes.
    pub fn not_found(error: &FindError) -> Self {
        Self::none_found(Failure::from_error(error).to_string())
    }

    /// Counts one replica's answer.
    pub fn add(&mut self, answer: Result<(), Failure>) {
        self.replicas += 1;
        match answer {
            Ok(()) => self.ready += 1,
            Err(reason) => {
                self.not_ready.get_or_insert_with(|| reason.to_string());
            }
        }
    }
}

impl Replicas {
    pub fn new(base: Url, timeout: Duration) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()?;
        Ok(Self { base, client })
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// One base URL per replica found, or why none was.
    pub async fn find(&self) -> Result<Vec<Url>, FindError> {
        let host = self.base.host_str().unwrap_or_default();
        let port = self.base.port_or_known_default().unwrap_or(80);
        let addresses = tokio::net::lookup_host((host, port))
            .await
            .map_err(|source| FindError::Resolve {
                host: host.to_owned(),
                source,
            })?;
        match replica_urls(&self.base, addresses) {
            urls if urls.is_empty() => Err(FindError::NoAddress {
                host: host.to_owned(),
            }),
            urls => Ok(urls),
        }
    }

    /// Every replica's `/readyz`.
    pub async fn readiness(&self) -> Readiness {
        let urls = match self.find().await {
            Ok(urls) => urls,
            Err(error) => return Readiness::not_found(&error),
        };
        let answers = join_all(urls.iter().map(|url| self.ready(url))).await;
        let mut readiness = Readiness::default();
        for answer in answers {
            readiness.add(answer);
        }
        readiness
    }

    /// One replica's `/readyz`: ready, or why not in its own words.
    pub async fn ready(&self, base: &Url) -> Result<(), Failure> {
        let url = base.join("readyz").map_err(|e| Failure::from_error(&e))?;
        let response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| Failure::from(format!("does not answer: {}", without_url(e))))?;
        if response.status().is_success() {
            return Ok(());
        }
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        Err(Failure::from(if body.trim().is_empty() {
            format!("/readyz answered {status}")
        } else {
            body.trim().chars().take(300).collect::<String>()
        }))
    }
}

/// One base URL per distinct address, in a stable order, at most
/// [`MAX_ADDRESSES`]. Plain http URLs name the address itself, so that each
/// replica behind one name is asked itself; an https URL keeps its name
/// (certificates name hosts), and so reaches whichever replica answers.
fn replica_urls(base: &Url, addresses: impl Iterator<Item = SocketAddr>) -> Vec<Url> {
    let mut addresses: Vec<SocketAddr> = addresses.collect();
    addresses.sort_unstable();
    addresses.dedup();
    addresses.truncate(MAX_ADDRESSES);
    if base.scheme() != "http" {
        return addresses
            .first()
            .map(|_| base.clone())
            .into_iter()
            .collect();
    }
    addresses
        .into_iter()
        .map(|address| {
            let mut url = base.clone();
            // Cannot fail: an http URL always has a host to replace.
            let _ = url.set_ip_host(address.ip());
            let _ = url.set_port(Some(address.port()));
            url
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn addresses(list: &[&str]) -> impl Iterator<Item = SocketAddr> {
        list.iter()
            .map(|a| a.parse().unwrap())
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn each_address_behind_a_name_is_a_replica_of_its_own() {
        let base = Url::parse("http://event-api-pods:9998/").unwrap();
        let urls = replica_urls(
            &base,
            addresses(&[
                "10.0.0.7:9998",
                "10.0.0.3:9998",
                "10.0.0.7:9998",
                "[fd00::2]:9998",
            ]),
        );
        let urls: Vec<&str> = urls.iter().map(Url::as_str).collect();
        assert_eq!(
            urls,
            [
                "http://10.0.0.3:9998/",
                "http://10.0.0.7:9998/",
                "http://[fd00::2]:9998/"
            ],
            "one per distinct address, sorted"
        );
    }

    #[test]
    fn a_dns_answer_is_bounded_and_https_keeps_its_name() {
        let many: Vec<String> = (0..100).map(|i| format!("10.0.1.{i}:9996")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let base = Url::parse("http://consumer-high-pods:9996/").unwrap();
        assert_eq!(replica_urls(&base, addresses(&many)).len(), MAX_ADDRESSES);

        let secure = Url::parse("https://api.example.com/").unwrap();
        let urls = replica_urls(&secure, addresses(&["10.0.0.1:443", "10.0.0.2:443"]));
        assert_eq!(urls, std::slice::from_ref(&secure));
        assert!(replica_urls(&secure, addresses(&[])).is_empty());
    }

    #[tokio::test]
    async fn each_replica_answers_for_itself_and_is_counted() {
        use axum::routing::get;
        // Two replicas on one port, one per loopback address: `localhost`
        // stands for a headless Service's name.
        let ready = axum::Router::new().route("/readyz", get(|| async { "ready" }));
        let not_ready = axum::Router::new().route(
            "/readyz",
            get(|| async {
                (
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    "not ready: kafka",
                )
            }),
        );
        let first = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = first.local_addr().unwrap().port();
        let Ok(second) = tokio::net::TcpListener::bind(("127.0.0.2", port)).await else {
            return; // no second loopback address on this host
        };
        tokio::spawn(async move { axum::serve(first, ready).await });
        tokio::spawn(async move { axum::serve(second, not_ready).await });

        let base = Url::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
        let replicas = Replicas::new(base, Duration::from_secs(2)).unwrap();
        let both: Vec<Url> = replica_urls(
            &replicas.base,
            addresses(&[&format!("127.0.0.2:{port}"), &format!("127.0.0.1:{port}")]),
        );
        let mut readiness = Readiness::default();
        for url in &both {
            readiness.add(replicas.ready(url).await);
        }
        assert_eq!((readiness.replicas, readiness.ready), (2, 1));
        assert_eq!(readiness.not_ready.as_deref(), Some("not ready: kafka"));
    }
}
