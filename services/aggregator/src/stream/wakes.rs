//! Wakes the live streams as soon as a consumer tells that newly stored
//! events can be read (its `GET /v1/visible`, streamproc-kafka's
//! `consume::visible`), so that a chart shows them without waiting for the
//! next STREAM_INTERVAL tick. Every replica behind CONSUMER_HIGH_URL and
//! CONSUMER_LOW_URL is listened to on a connection of its own; the names
//! are resolved again every [`RESOLVE_EVERY`], which follows replicas that
//! come and go and reconnects a listener whose connection ended; each
//! connection wakes the streams once as it opens. Without
//! those URLs, or while no consumer answers, the streams keep their tick.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::Url;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::pipeline::Replicas;

/// How often each consumer's name is resolved again.
const RESOLVE_EVERY: Duration = Duration::from_secs(2);
/// A listener that hears nothing this long, not even the consumer's
/// keep-alive (every 10 s), takes the connection for dead.
const SILENT_FOR: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// What streams wait on: a change means a consumer stored something.
pub type Wakes = watch::Receiver<()>;

/// Listens to the consumers at `bases` until `shutdown`.
pub fn listen(bases: Vec<Url>, shutdown: CancellationToken) -> anyhow::Result<Wakes> {
    let (sender, wakes) = watch::channel(());
    let client = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(SILENT_FOR)
        .build()?;
    for base in bases {
        let replicas = Replicas::new(base, CONNECT_TIMEOUT)?;
        tokio::spawn(follow(
            replicas,
            client.clone(),
            sender.clone(),
            shutdown.clone(),
        ));
    }
    // With no consumer to listen to, the sender is dropped here, and
    // `woken` never completes: the streams tick.
    Ok(wakes)
}

/// Completes when a consumer has stored something since the last call;
/// never, once no one can tell any more.
pub async fn woken(wakes: &mut Wakes) {
    if wakes.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Keeps one listener per replica of one consumer.
async fn follow(
    replicas: Replicas,
    client: reqwest::Client,
    sender: watch::Sender<()>,
    shutdown: CancellationToken,
) {
    let mut listening: HashMap<Url, JoinHandle<()>> = HashMap::new();
    loop {
        match replicas.find().await {
            Ok(found) => {
                listening.retain(|url, listener| {
                    let keep = found.contains(url) && !listener.is_finished();
                    if !keep {
                        listener.abort();
                    }
                    keep
                });
                for url in found {
                    listening.entry(url.clone()).or_insert_with(|| {
                        tokio::spawn(listen_to(client.clone(), url, sender.clone()))
                    });
                }
            }
            Err(error) => tracing::debug!(%error, "no consumer replica to listen to"),
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(RESOLVE_EVERY) => {}
        }
    }
    for listener in listening.values() {
        listener.abort();
    }
}

/// Listens to one replica until its connection ends.
async fn listen_to(client: reqwest::Client, replica: Url, sender: watch::Sender<()>) {
    let Ok(url) = replica.join("v1/visible") else {
        return;
    };
    let mut response = match client.get(url).send().await {
        Ok(response) if response.status().is_success() => response,
        Ok(response) => {
            // A consumer older than /v1/visible: the streams tick.
            tracing::debug!(%replica, status = %response.status(), "consumer tells nothing stored");
            return;
        }
        Err(error) => {
            tracing::debug!(%replica, error = %error.without_url(), "consumer not reachable");
            return;
        }
    };
    tracing::debug!(%replica, "listening for what the consumer stores");
    // A consumer tells only the changes after a listener connects, and
    // whatever it stored while no one listened (it was restarting, or this
    // listener was) would otherwise wait for the streams' tick.
    sender.send_replace(());
    // Each event arrives in a chunk of its own; the keep-alives are SSE
    // comments (":" lines). Whatever else arrives is a `visible` event.
    while let Ok(Some(chunk)) = response.chunk().await {
        if !chunk.starts_with(b":") {
            sender.send_replace(());
        }
    }
}
