//! Prometheus metrics: each service registers its own metrics in a
//! [`Registry`] at start-up; the request counters below are shared.
//!
//! There is no global registry, so tests can run several services in one
//! process without their figures mixing.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
pub use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub path: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PathLabels {
    pub path: String,
}

/// The method as a label: the standard methods by name, anything a client
/// invents as "other", so that no request can add a series to `/metrics`.
pub(crate) fn method_label(method: &Method) -> &'static str {
    const KNOWN: [Method; 9] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ];
    KNOWN
        .iter()
        .find(|known| *known == method)
        .map_or("other", Method::as_str)
}

/// The route pattern that matched (`/api/v1/series`), or "unmatched": never
/// the raw path, which a client chooses.
pub(crate) fn path_label<B>(request: &axum::http::Request<B>) -> &str {
    request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
}

/// Histogram buckets in seconds from 0.5 ms to about 16 s.
pub fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Counts HTTP requests by route and status and times them by route.
#[derive(Clone)]
pub struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    duration: Family<PathLabels, Histogram>,
}

impl HttpMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            requests: Family::default(),
            duration: Family::new_with_constructor(latency_histogram),
        };
        registry.register(
            streamproc_event::names::HTTP_REQUESTS_METRIC,
            "HTTP requests answered, by method, route and status",
            metrics.requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by route",
            metrics.duration.clone(),
        );
        metrics
    }

    /// Middleware for `axum::middleware::from_fn_with_state`. Labels use the
    /// route pattern, not the raw path, so unknown paths cannot blow up the
    /// number of series.
    pub async fn track(State(metrics): State<Self>, request: Request, next: Next) -> Response {
        let started = Instant::now();
        let method = method_label(request.method()).to_owned();
        let path = path_label(&request).to_owned();
        let response = next.run(request).await;
        metrics
            .requests
            .get_or_create(&RequestLabels {
                method,
                path: path.clone(),
                status: response.status().as_u16(),
            })
            .inc();
        metrics
            .duration
            .get_or_create(&PathLabels { path })
            .observe(started.elapsed().as_secs_f64());
        response
    }
}

/// One line of Prometheus text: a series' name, its labels and its value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample<'a> {
    pub name: &'a str,
    /// `a="x",b="y"`, as written; empty when the series has none.
    pub labels: &'a str,
    pub value: f64,
}

impl<'a> Sample<'a> {
    /// A label's value. Values here (methods, route patterns, status codes,
    /// store names) hold no quotes or commas.
    pub fn label(&self, key: &str) -> Option<&'a str> {
        self.labels.split(',').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k.trim() == key).then(|| v.trim().trim_matches('"'))
        })
    }
}

/// The samples of a service's `/metrics` text with a finite value;
/// comments and anything unreadable are skipped. What the aggregator's
/// pipeline view and the tests read the services' figures with.
pub fn samples(text: &str) -> impl Iterator<Item = Sample<'_>> {
    text.lines().filter_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let value: f64 = value.trim().parse().ok().filter(|v: &f64| v.is_finite())?;
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => (name, labels.trim_end_matches('}')),
            None => (series, ""),
        };
        (!name.starts_with('#')).then_some(Sample {
            name,
            labels,
            value,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_read_with_their_labels() {
        let text = "# HELP x y\n# TYPE x counter\nx_total 3\n\
                    http_requests_total{method=\"POST\",path=\"/\",status=\"503\"} 2\n\
                    broken\nnan_total NaN\n# EOF\n";
        let read: Vec<Sample<'_>> = samples(text).collect();
        assert_eq!(read.len(), 2, "{read:?}");
        assert_eq!((read[0].name, read[0].value), ("x_total", 3.0));
        assert_eq!(read[1].label("status"), Some("503"));
        assert_eq!(read[1].label("path"), Some("/"));
        assert_eq!(read[1].label("nope"), None);
    }

    #[test]
    fn invented_methods_share_one_label() {
        assert_eq!(method_label(&Method::POST), "POST");
        let invented = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(method_label(&invented), "other");
        let another = Method::from_bytes(b"WHEN").unwrap();
        assert_eq!(method_label(&another), "other");
    }
}
