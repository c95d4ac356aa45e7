//! Tells listeners, as it happens, that newly stored events can be read
//! from the store: the aggregator's live stream refreshes on it instead of
//! waiting for its next tick. `GET /v1/visible` is a Server-Sent Events
//! stream with a `visible` event per change; its data is a counter of
//! changes since the consumer started. Changes faster than a listener reads
//! fold into one event (a `watch` channel keeps only the latest), so a slow
//! listener costs the consumer nothing.
//!
//! Why HTTP from the consumer: it is the one process that knows the moment
//! a write became readable (consumer-low's only once its per-second totals
//! are refreshed), the aggregator already reaches each consumer replica by
//! its URL for `/readyz`, and it needs no broker round trip or store of its
//! own.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use futures_util::StreamExt as _;
use tokio::sync::watch;
use tokio_stream::wrappers::WatchStream;
use tokio_util::sync::CancellationToken;

/// The path listeners read, for the aggregator to build its URL.
pub const VISIBLE_PATH: &str = "/v1/visible";

/// The sending side, cloned into whatever makes events visible.
#[derive(Clone)]
pub struct Visible {
    changes: watch::Sender<u64>,
}

impl Default for Visible {
    fn default() -> Self {
        Self {
            changes: watch::Sender::new(0),
        }
    }
}

impl Visible {
    /// Newly stored events can be read now.
    pub fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// `GET /v1/visible`, its streams ended when `stop` is cancelled (a
    /// graceful shutdown would otherwise wait for every listener).
    pub fn router(&self, stop: CancellationToken) -> Router {
        Router::new()
            .route(VISIBLE_PATH, get(listen))
            .with_state((self.changes.clone(), stop))
    }
}

async fn listen(
    State((changes, stop)): State<(watch::Sender<u64>, CancellationToken)>,
) -> impl IntoResponse {
    // From the changes after this one: a listener asks the store itself
    // once it is connected.
    let events = WatchStream::from_changes(changes.subscribe())
        .map(|n| Ok::<_, Infallible>(Event::default().event("visible").data(n.to_string())))
        .take_until(stop.cancelled_owned());
    // Frequent enough for a listener to notice a dead connection (the
    // aggregator gives up after 30 s of silence).
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(10)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn changes_faster_than_a_listener_reads_fold_into_the_latest() {
        let visible = Visible::default();
        let mut listener = WatchStream::from_changes(visible.changes.subscribe());
        visible.changed();
        visible.changed();
        visible.changed();
        assert_eq!(listener.next().await, Some(3));
        visible.changed();
        assert_eq!(listener.next().await, Some(4));
    }
}
