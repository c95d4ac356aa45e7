//! Optional bearer tokens: event-api's ingest and the aggregator's API may
//! require `Authorization: Bearer <token>`; event-producer and web-ui send it.
//!
//! The token comes from a setting (`API_TOKEN`) or, better, from a file
//! (`API_TOKEN_FILE`, such as a mounted Kubernetes Secret). It is never
//! printed: its `Debug` is `<redacted>`, clap hides its environment value in
//! `--help`, and no error message quotes it. A presented token is compared
//! in constant time ([`subtle`]), so the time of a refusal tells nothing
//! about how much of it was right.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use axum::Router;
use clap::Args;
use subtle::ConstantTimeEq;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, RefOr, ResponseBuilder};

use crate::error::{self, ErrorResponse};

/// The error code of a 401.
pub const UNAUTHORIZED: &str = "unauthorized";

/// The name of the bearer security scheme in the OpenAPI documents.
pub const BEARER_SCHEME: &str = "bearer";

/// Why a value cannot be a token. Never quotes the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is empty")]
    Empty,
    #[error("the token holds a character other than visible ASCII (no spaces either)")]
    NotVisibleAscii,
}

/// A bearer token. Its `Debug` prints `<redacted>`, so a configuration that
/// derives `Debug` can be logged whole.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(Arc<str>);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Token {
    /// The token in `value`, without surrounding white space (a file written
    /// by `echo` ends with a newline). It must be non-empty visible ASCII,
    /// what an HTTP header can carry; the error never quotes the value.
    pub fn new(value: &str) -> Result<Self, TokenError> {
        let value = value.trim();
        if value.is_empty() {
            return Err(TokenError::Empty);
        }
        if !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TokenError::NotVisibleAscii);
        }
        Ok(Self(value.into()))
    }

    /// Whether `presented` is this token, in time that does not depend on
    /// where they differ (only on their lengths).
    pub fn matches(&self, presented: &[u8]) -> bool {
        bool::from(self.0.as_bytes().ct_eq(presented))
    }

    /// `Bearer <token>` for an `Authorization` header, marked sensitive so
    /// that HTTP libraries leave it out of their own logs.
    pub fn authorization(&self) -> HeaderValue {
        let mut value = HeaderValue::from_str(&format!("Bearer {}", self.0))
            .expect("Token::new admits visible ASCII only");
        value.set_sensitive(true);
        value
    }

    /// The token from `value` or else from the file at `file` (at most one
    /// may be given); `None` when neither is. `setting` names the setting in
    /// error messages, e.g. `API_TOKEN`.
    pub fn resolve(
        value: Option<&str>,
        file: Option<&Path>,
        setting: &str,
    ) -> anyhow::Result<Option<Self>> {
        match (value, file) {
            (Some(_), Some(_)) => {
                anyhow::bail!("set {setting} or {setting}_FILE, not both")
            }
            (Some(value), None) => Self::new(value)
                .map(Some)
                .map_err(|e| anyhow::anyhow!("{setting}: {e}")),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("{setting}_FILE: cannot read {}", path.display()))?;
                Self::new(&text)
                    .map(Some)
                    .map_err(|e| anyhow::anyhow!("{setting}_FILE {}: {e}", path.display()))
            }
            (None, None) => Ok(None),
        }
    }
}

/// A token as a setting gives it, not yet checked (that is [`Token::new`],
/// whose error never quotes it). Its `Debug` prints `<redacted>`, so a clap
/// configuration holding one can derive `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

/// The token a service requires of its clients (event-api, aggregator) or
/// sends to event-api (event-producer): `API_TOKEN` or `API_TOKEN_FILE`.
#[derive(Debug, Clone, Default, Args)]
pub struct ApiTokenArgs {
    /// Bearer token of the API: the one event-api or the aggregator requires,
    /// the one event-producer sends. Unset, none is required or sent. Prefer
    /// API_TOKEN_FILE: a setting shows in the process's environment.
    #[arg(long, env = "API_TOKEN", hide_env_values = true)]
    pub api_token: Option<Secret>,

    /// File holding the bearer token, e.g. a mounted Secret; surrounding
    /// white space is ignored. Not together with API_TOKEN.
    #[arg(long, env = "API_TOKEN_FILE")]
    pub api_token_file: Option<PathBuf>,
}

impl ApiTokenArgs {
    /// The configured token, read from its file if it is in one.
    pub fn token(&self) -> anyhow::Result<Option<Token>> {
        Token::resolve(
            self.api_token.as_ref().map(Secret::expose),
            self.api_token_file.as_deref(),
            "API_TOKEN",
        )
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Missing,
    NotBearer,
    Wrong,
}

/// Checks the `Authorization` header against `token`.
fn check(token: &Token, headers: &HeaderMap) -> Result<(), Refusal> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(Refusal::Missing);
    };
    let value = value.as_bytes();
    let (scheme, credentials) = match value.iter().position(|&b| b == b' ') {
        Some(space) => (&value[..space], &value[space + 1..]),
        None => (value, &b""[..]),
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Err(Refusal::NotBearer);
    }
    let credentials = credentials.trim_ascii();
    if token.matches(credentials) {
        Ok(())
    } else {
        Err(Refusal::Wrong)
    }
}

/// The 401: the services' error body (`crate::error`)
/// and `WWW-Authenticate` as RFC 6750 asks.
fn refuse(refusal: Refusal) -> Response {
    let (message, challenge) = match refusal {
        Refusal::Missing => (
            "this endpoint requires a token: send the header Authorization: Bearer <token>",
            "Bearer",
        ),
        Refusal::NotBearer => (
            "the Authorization header is not a bearer token: send Authorization: Bearer <token>",
            "Bearer",
        ),
        Refusal::Wrong => (
            "the bearer token is not the one this service accepts",
            "Bearer error=\"invalid_token\"",
        ),
    };
    let mut response =
        ErrorResponse::new(StatusCode::UNAUTHORIZED, UNAUTHORIZED, message).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    response
}

/// Middleware: passes the request on when it carries `token`, else answers
/// 401 without looking at its body.
pub async fn require(State(token): State<Token>, request: Request, next: Next) -> Response {
    match check(&token, request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => refuse(refusal),
    }
}

/// `router`'s routes (those it has now, not ones merged later) behind
/// `token` when there is one; unchanged when there is none.
pub fn protect<S>(router: Router<S>, token: Option<Token>) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    match token {
        Some(token) => router.route_layer(middleware::from_fn_with_state(token, require)),
        None => router,
    }
}

/// The same for one route's methods (not its 405 fallback).
pub fn protect_method<S>(route: MethodRouter<S>, token: Option<Token>) -> MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    match token {
        Some(token) => route.route_layer(middleware::from_fn_with_state(token, require)),
        None => route,
    }
}

/// The security scheme of [`BEARER_SCHEME`] in an OpenAPI document;
/// `description` says which paths require it.
pub fn bearer_scheme(description: &str) -> SecurityScheme {
    SecurityScheme::Http(
        HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some(description))
            .build(),
    )
}

/// The 401 that [`require`] answers, for the OpenAPI documents: the error
/// body with [`UNAUTHORIZED`], and the `WWW-Authenticate` challenge.
pub struct Unauthorized;

impl<'r> utoipa::ToResponse<'r> for Unauthorized {
    fn response() -> (&'r str, RefOr<utoipa::openapi::Response>) {
        let challenge = HeaderBuilder::new()
            .schema(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some("^Bearer")),
            )
            .description(Some(
                "`Bearer`, with `error=\"invalid_token\"` when a bearer token was sent but is not the right one",
            ));
        let response = ResponseBuilder::new()
            .description(
                "API_TOKEN is set and the request does not carry it as `Authorization: Bearer <token>` \
                 (missing, another scheme, or a wrong token); the request was refused before its body was read",
            )
            .header("WWW-Authenticate", challenge.build())
            .content(
                "application/json",
                Content::new(Some(error::error_body(&[UNAUTHORIZED], &[]))),
            );
        ("Unauthorized", response.build().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use axum::routing::get;
    use clap::Parser;
    use tower::ServiceExt;

    fn token() -> Token {
        Token::new("s3cret-token").unwrap()
    }

    fn headers(authorization: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(value) = authorization {
            headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn accepts_the_token_and_nothing_else() {
        let t = token();
        assert_eq!(check(&t, &headers(Some("Bearer s3cret-token"))), Ok(()));
        assert_eq!(check(&t, &headers(Some("bearer s3cret-token"))), Ok(()));
        assert_eq!(check(&t, &headers(None)), Err(Refusal::Missing));
        assert_eq!(
            check(&t, &headers(Some("Basic s3cret-token"))),
            Err(Refusal::NotBearer)
        );
        assert_eq!(
            check(&t, &headers(Some("s3cret-token"))),
            Err(Refusal::NotBearer)
        );
        for wrong in [
            "Bearer s3cret-tokeN",
            "Bearer s3cret-toke",
            "Bearer s3cret-token2",
            "Bearer ",
            "Bearer",
        ] {
            assert_eq!(
                check(&t, &headers(Some(wrong))),
                Err(Refusal::Wrong),
                "{wrong}"
            );
        }
    }

    #[test]
    fn tokens_are_visible_ascii_and_never_printed() {
        assert_eq!(Token::new("  abc\n").unwrap(), Token::new("abc").unwrap());
        for bad in ["", " \n", "a b", "ä", "a\u{7f}"] {
            let error = Token::new(bad).unwrap_err();
            assert!(
                !bad.trim().is_empty() || error == TokenError::Empty,
                "{bad:?}"
            );
        }
        assert_eq!(format!("{:?}", token()), "<redacted>");
        assert!(token().authorization().is_sensitive());
        assert_eq!(token().authorization(), "Bearer s3cret-token");
    }

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        token: ApiTokenArgs,
    }

    #[test]
    fn from_a_setting_or_a_file_never_both() {
        let cli = Cli::parse_from(["t"]);
        assert_eq!(cli.token.token().unwrap(), None);
        let cli = Cli::parse_from(["t", "--api-token", "s3cret-token"]);
        assert_eq!(cli.token.token().unwrap(), Some(token()));
        assert!(!format!("{cli:?}").contains("s3cret"), "{cli:?}");

        let file = std::env::temp_dir().join(format!("streamproc-token-{}", std::process::id()));
        std::fs::write(&file, "s3cret-token\n").unwrap();
        let path = file.to_str().unwrap();
        let cli = Cli::parse_from(["t", "--api-token-file", path]);
        assert_eq!(cli.token.token().unwrap(), Some(token()));
        let cli = Cli::parse_from(["t", "--api-token-file", path, "--api-token", "x"]);
        assert!(cli
            .token
            .token()
            .unwrap_err()
            .to_string()
            .contains("not both"));
        std::fs::write(&file, "\n").unwrap();
        let cli = Cli::parse_from(["t", "--api-token-file", path]);
        let error = cli.token.token().unwrap_err().to_string();
        assert!(
            error.contains("API_TOKEN_FILE") && error.contains("empty"),
            "{error}"
        );
        std::fs::remove_file(&file).unwrap();
        let error = cli.token.token().unwrap_err().to_string();
        assert!(error.contains("cannot read"), "{error}");

        let cli = Cli::parse_from(["t", "--api-token", "a b"]);
        let error = cli.token.token().unwrap_err().to_string();
        assert!(
            error.starts_with("API_TOKEN:") && !error.contains("a b"),
            "{error}"
        );
    }

    async fn call(app: Router, path: &str, authorization: Option<&str>) -> (StatusCode, Response) {
        let mut request = Request::get(path);
        if let Some(value) = authorization {
            request = request.header(header::AUTHORIZATION, value);
        }
        let response = app
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        (response.status(), response)
    }

    #[tokio::test]
    async fn protects_the_routes_it_is_given_only() {
        let api = protect(
            Router::new().route("/api", get(|| async { "data" })),
            Some(token()),
        );
        let app = api.route("/healthz", get(|| async { "ok" }));
        let (status, _) = call(app.clone(), "/api", Some("Bearer s3cret-token")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(call(app.clone(), "/healthz", None).await.0, StatusCode::OK);
        assert_eq!(
            call(app.clone(), "/nothing", None).await.0,
            StatusCode::NOT_FOUND
        );

        let (status, response) = call(app.clone(), "/api", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"], "unauthorized");
        assert!(
            body["message"].as_str().unwrap().contains("Bearer"),
            "{body}"
        );

        let (status, response) = call(app, "/api", Some("Bearer s3cret-tokeN")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers()[header::WWW_AUTHENTICATE],
            "Bearer error=\"invalid_token\""
        );

        let open = protect(Router::new().route("/api", get(|| async { "data" })), None);
        assert_eq!(call(open, "/api", None).await.0, StatusCode::OK);
    }
}
