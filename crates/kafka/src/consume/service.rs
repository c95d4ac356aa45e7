//! Everything a consumer service does besides choosing its sink: probes and
//! metrics, the consume loop, `DISABLE`, and shutdown. consumer-high and
//! consumer-low are this plus a [`Sink`].

use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::rebuild::{RebuildError, RebuildSummary, ReplayFrom};
use super::visible::Visible;
use super::{Consumer, ConsumerMetrics, ConsumerSettings, Sink};
use streamproc_kit::config::ServeArgs;
use streamproc_kit::metrics::Registry;
use streamproc_kit::ops::{self, NotReady, ReadinessCheck};
use streamproc_kit::server;

/// Serves a consumer on `listener` until `shutdown`. `connect` builds the
/// sink, given the registry for its metrics and the [`Visible`] it tells
/// if its events become readable only after `write` (see
/// [`Sink::VISIBLE_WHEN_WRITTEN`]); it is not called when `serve_args`
/// says DISABLE, so a disabled consumer opens no connection to Kafka or its
/// store.
pub async fn serve<S: Sink>(
    settings: ConsumerSettings,
    serve_args: &ServeArgs,
    listener: TcpListener,
    connect: impl FnOnce(&mut Registry, &Visible) -> anyhow::Result<S>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut registry = Registry::default();
    let visible = Visible::default();
    let consumer = if serve_args.disable {
        tracing::warn!("DISABLE is set: consuming nothing, connecting to no store");
        None
    } else {
        let metrics = ConsumerMetrics::register(&mut registry);
        let sink = Arc::new(connect(&mut registry, &visible)?);
        let consumer = Consumer::new(settings, metrics, visible.clone())?;
        Some((Arc::new(consumer), sink))
    };
    let ready = match &consumer {
        Some((consumer, sink)) => readiness(consumer.clone(), sink.clone()),
        None => ops::always_ready(),
    };
    // Probes keep answering while the consumer drains.
    let server_stop = CancellationToken::new();
    let routes = Router::new()
        .route("/", get(ops::root_ok))
        .merge(visible.router(server_stop.clone()));
    let app = ops::with_probes_and_metrics(routes, registry, ready);
    tracing::info!(addr = %listener.local_addr()?, "serving probes, metrics and /v1/visible");

    let connections = serve_args.connections.clone();
    let server = tokio::spawn({
        let stop = server_stop.clone();
        async move { server::serve(listener, app, &connections, stop).await }
    });
    match consumer {
        Some((consumer, sink)) => consumer.run(sink.as_ref(), shutdown).await,
        None => shutdown.cancelled().await,
    }
    server_stop.cancel();
    server.await??;
    Ok(())
}

/// Rebuilds the store behind `sink` from the log, from `from` up to where
/// the topic ends now (see [`super::rebuild`]); serves nothing.
pub async fn rebuild<S: Sink>(
    settings: &ConsumerSettings,
    from: ReplayFrom,
    sink: &S,
    shutdown: CancellationToken,
) -> Result<RebuildSummary, RebuildError> {
    let metrics = ConsumerMetrics::register(&mut Registry::default());
    super::rebuild::rebuild(settings, from, sink, &metrics, shutdown).await
}

/// How long a readiness probe waits for the store.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

fn readiness<S: Sink>(consumer: Arc<Consumer>, sink: Arc<S>) -> ReadinessCheck {
    Arc::new(move || {
        let consumer = consumer.clone();
        let sink = sink.clone();
        Box::pin(async move {
            consumer.check_progress()?;
            consumer.check_broker().await?;
            match tokio::time::timeout(READY_TIMEOUT, sink.check()).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(NotReady::new("store", e)),
                Err(_) => Err(NotReady::new(
                    "store",
                    format!("no answer within {READY_TIMEOUT:?}"),
                )),
            }
        })
    })
}
