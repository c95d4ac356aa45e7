//! `/api` on the page's own origin, forwarded to the aggregator, so the page
//! needs no CORS and no separate dev server, locally and behind an ingress
//! alike. Responses stream through unbuffered, which keeps Server-Sent
//! Events live.

use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use percent_encoding::percent_decode_str;
use streamproc_kit::auth::Token;
use streamproc_kit::error::{Chain, ErrorResponse};
use tokio_util::sync::CancellationToken;

/// Headers of the aggregator's answer that the page needs.
const FORWARDED: [header::HeaderName; 3] = [
    header::CONTENT_TYPE,
    header::CACHE_CONTROL,
    header::RETRY_AFTER,
];

#[derive(Clone)]
pub struct Proxy {
    client: reqwest::Client,
    /// The aggregator's base URL, without a trailing slash.
    upstream: String,
    /// The aggregator's token (AGGREGATOR_TOKEN), sent with every request
    /// to it; never passed back to the browser.
    token: Option<Token>,
    shutdown: CancellationToken,
}

impl Proxy {
    pub fn new(
        upstream: &str,
        token: Option<Token>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        // No overall timeout: /api/v1/stream never ends. The aggregator has
        // its own per-store time limits.
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .build()?;
        Ok(Self {
            client,
            upstream: upstream.trim_end_matches('/').to_owned(),
            token,
            shutdown,
        })
    }

    pub fn upstream(&self) -> &str {
        &self.upstream
    }
}

/// `GET /api` and `GET /api/*`: the same path and query at the aggregator.
pub async fn forward(State(proxy): State<Proxy>, uri: Uri, headers: HeaderMap) -> Response {
    if !stays_under_api(uri.path()) {
        return ErrorResponse::new(
            StatusCode::BAD_REQUEST,
            "bad_path",
            "only paths under /api/ are forwarded: no dot segments, empty segments or encoded slashes",
        )
        .into_response();
    }
    let path = uri.path_and_query().map_or("/api", |p| p.as_str());
    let mut request = proxy.client.get(format!("{}{path}", proxy.upstream));
    if let Some(accept) = headers.get(header::ACCEPT) {
        request = request.header(header::ACCEPT, accept);
    }
    // The browser's own Authorization header is not forwarded: the
    // aggregator's token is web-ui's to send.
    if let Some(token) = &proxy.token {
        request = request.header(header::AUTHORIZATION, token.authorization());
    }
    let upstream = match request.send().await {
        Ok(response) => response,
        Err(error) => {
            tracing::warn!(
                upstream = %proxy.upstream,
                error = %Chain(&error),
                "aggregator did not answer"
            );
            let message = format!(
                "aggregator unavailable at {}: {}",
                proxy.upstream,
                Chain(&error)
            );
            return ErrorResponse::new(StatusCode::BAD_GATEWAY, "aggregator_unavailable", message)
                .into_response();
        }
    };
    if upstream.status() == reqwest::StatusCode::UNAUTHORIZED {
        tracing::warn!(
            upstream = %proxy.upstream,
            path,
            status = upstream.status().as_u16(),
            "the aggregator refused the request: set AGGREGATOR_TOKEN to its API_TOKEN"
        );
    }
    let mut response = Response::builder().status(upstream.status().as_u16());
    for name in FORWARDED {
        if let Some(value) = upstream.headers().get(&name) {
            response = response.header(name, value.as_bytes());
        }
    }
    // Open streams end at shutdown, or graceful shutdown would wait forever.
    let body = upstream
        .bytes_stream()
        .take_until(proxy.shutdown.clone().cancelled_owned());
    response
        .body(Body::from_stream(body))
        .unwrap_or_else(|e| (StatusCode::BAD_GATEWAY, e.to_string()).into_response())
}

/// Whether the aggregator, once it (or the URL parser on the way) resolves
/// `path`, still sees a path under `/api`. The router matched `/api/...`
/// on the raw text, but `/api/../metrics`, `/api/%2e%2E/metrics` and
/// `/api/..%2fmetrics` all climb out after resolution, and a backslash reads
/// as a slash to a WHATWG URL parser. Rather than resolve such paths the way
/// some parser might, every segment that could move up, or that hides a
/// separator, is refused; the page never sends one.
fn stays_under_api(path: &str) -> bool {
    let Some(rest) = path.strip_prefix("/api") else {
        return false;
    };
    if rest.is_empty() {
        return true;
    }
    let Some(rest) = rest.strip_prefix('/') else {
        return false;
    };
    rest.split('/').all(|segment| {
        let decoded: Vec<u8> = percent_decode_str(segment).collect();
        !decoded.is_empty()
            && decoded != b"."
            && decoded != b".."
            && !decoded.iter().any(|b| matches!(b, b'/' | b'\\'))
    })
}

/// What `/api` answers when DISABLE is set: the page still loads.
pub async fn disabled() -> Response {
    ErrorResponse::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "disabled",
        "web-ui is disabled (DISABLE): /api is not forwarded",
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::stays_under_api;

    #[test]
    fn only_paths_that_stay_under_api_are_forwarded() {
        for good in [
            "/api",
            "/api/v1/series",
            "/api/v1/stream",
            "/api/v1/series%20x",
            "/api/v1/a.b",
            "/api/v1/...",
        ] {
            assert!(stays_under_api(good), "{good}");
        }
        for bad in [
            "/api/../metrics",
            "/api/%2e%2e/metrics",
            "/api/%2E%2e/metrics",
            "/api/.%2e/metrics",
            "/api/..%2fmetrics",
            "/api/..%2Fmetrics",
            "/api/..%5cmetrics",
            "/api/..\\metrics",
            "/api/v1/./series",
            "/api//metrics",
            "/api/v1//series",
            "/api/",
            "/apiv1",
            "/metrics",
        ] {
            assert!(!stays_under_api(bad), "{bad}");
        }
    }
}
