//! web-ui: serves StreamProc's chart page and forwards `/api` to the
//! aggregator. See the README beside this crate.

mod proxy;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::http::{header, HeaderValue};
use axum::routing::get;
use axum::Router;
use clap::Parser;
use streamproc_kit::auth::{Secret, Token};
use streamproc_kit::config::ServeArgs;
use streamproc_kit::error::Chain;
use streamproc_kit::metrics::Registry;
use streamproc_kit::ops::{self, NotReady, ReadinessCheck};
use streamproc_kit::server;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::compression::CompressionLayer;
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;

use proxy::Proxy;

pub const DEFAULT_PORT: u16 = streamproc_event::names::WEB_UI_PORT;

/// The files the page cannot work without; `npm ci` in this crate's folder
/// copies the charting library into `vendor/`.
const REQUIRED_ASSETS: [&str; 4] = ["index.html", "app.js", "favicon.svg", "vendor/uPlot.esm.js"];

/// Everything the page loads comes from its own origin: its module script,
/// its style sheets, its icon, and `/api` (fetch and the event stream).
/// Nothing inline, no other origin, no framing, no forms.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// web-ui: StreamProc's live chart in the browser.
#[derive(Debug, Clone, Parser)]
#[command(version, about)]
pub struct Config {
    #[command(flatten)]
    pub serve: ServeArgs,

    /// The aggregator that `/api` is forwarded to.
    #[arg(long, env = "AGGREGATOR_URL", default_value = "http://127.0.0.1:9995")]
    pub aggregator_url: String,

    /// Bearer token to send the aggregator, when its API_TOKEN is set. Only
    /// web-ui sends it: the browser never sees it. Prefer
    /// AGGREGATOR_TOKEN_FILE.
    #[arg(long, env = "AGGREGATOR_TOKEN", hide_env_values = true)]
    pub aggregator_token: Option<Secret>,

    /// File holding that token, e.g. a mounted Secret; surrounding white
    /// space is ignored. Not together with AGGREGATOR_TOKEN.
    #[arg(long, env = "AGGREGATOR_TOKEN_FILE")]
    pub aggregator_token_file: Option<PathBuf>,

    /// Folder of the page's files [default: this crate's assets/ folder].
    #[arg(long, env = "ASSETS_DIR", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/assets"))]
    pub assets_dir: PathBuf,
}

/// Runs web-ui on `listener` until `shutdown` is cancelled.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let token = Token::resolve(
        config.aggregator_token.as_ref().map(Secret::expose),
        config.aggregator_token_file.as_deref(),
        "AGGREGATOR_TOKEN",
    )?;
    if let Err(missing) = check_assets(&config.assets_dir) {
        tracing::error!(
            assets = %config.assets_dir.display(),
            error = %Chain(&missing),
            "page files missing"
        );
    }
    let api = if config.serve.disable {
        tracing::warn!("DISABLE is set: the page is served, /api is not forwarded");
        Router::new()
            .route("/api", get(proxy::disabled))
            .route("/api/{*path}", get(proxy::disabled))
    } else {
        let with_token = token.is_some();
        let proxy = Proxy::new(&config.aggregator_url, token, shutdown.clone())?;
        tracing::info!(
            upstream = proxy.upstream(),
            bearer_token = with_token,
            "forwarding /api to the aggregator"
        );
        Router::new()
            .route("/api", get(proxy::forward))
            .route("/api/{*path}", get(proxy::forward))
            .with_state(proxy)
    };
    // The page's files are small and change with every release: the browser
    // revalidates them rather than keeping a stale copy.
    let assets = Router::new()
        .fallback_service(ServeDir::new(&config.assets_dir))
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache"),
        ));
    let app = ops::with_probes_and_metrics(
        with_page_headers(api.merge(assets)),
        Registry::default(),
        assets_readiness(&config.assets_dir),
    );

    tracing::info!(
        addr = %listener.local_addr()?,
        assets = %config.assets_dir.display(),
        "web-ui listening"
    );
    server::serve(listener, app, &config.serve.connections, shutdown).await?;
    tracing::info!("web-ui stopped");
    Ok(())
}

/// The headers a browser needs to hold the page to what it is: the CSP
/// above, no content sniffing, no framing (for browsers that predate
/// frame-ancestors), no referrer sent anywhere; and every answer compressed
/// when the client asks. An event stream is not compressed: tower-http
/// leaves `text/event-stream` alone, so each update is sent as it comes.
fn with_page_headers(app: Router) -> Router {
    let set = |name, value: &'static str| {
        SetResponseHeaderLayer::overriding(name, HeaderValue::from_static(value))
    };
    app.layer(CompressionLayer::new())
        .layer(set(
            header::CONTENT_SECURITY_POLICY,
            CONTENT_SECURITY_POLICY,
        ))
        .layer(set(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(set(header::X_FRAME_OPTIONS, "DENY"))
        .layer(set(header::REFERRER_POLICY, "no-referrer"))
}

/// Files the page needs that are not in the assets folder.
#[derive(Debug, thiserror::Error)]
#[error("missing in {}: {} (run `npm ci` in services/web-ui)", dir.display(), files.join(", "))]
pub struct MissingAssets {
    dir: PathBuf,
    files: Vec<&'static str>,
}

fn check_assets(dir: &Path) -> Result<(), MissingAssets> {
    let files: Vec<&'static str> = REQUIRED_ASSETS
        .into_iter()
        .filter(|file| !dir.join(file).is_file())
        .collect();
    if files.is_empty() {
        Ok(())
    } else {
        Err(MissingAssets {
            dir: dir.to_owned(),
            files,
        })
    }
}

/// Ready when the page's files are there. The aggregator is not checked:
/// without it the page still loads and says what is down.
fn assets_readiness(dir: &Path) -> ReadinessCheck {
    let dir = dir.to_owned();
    Arc::new(move || {
        let result = check_assets(&dir).map_err(|e| NotReady::new("assets", e));
        Box::pin(async move { result })
    })
}
