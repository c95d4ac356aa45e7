//! `GET /api/v1/stream`: Server-Sent Events carrying the newest buckets of
//! both series, for live charts. Each `series` event's data is the same
//! JSON as `/api/v1/series` answers, for the last `last` buckets of `step`
//! (the bucket in progress included); after it, when the pipeline was
//! probed since the last one, a `pipeline` event with the same JSON as
//! `/api/v1/pipeline`.
//!
//! A `series` event is sent as soon as a consumer tells that it stored
//! something ([`wakes`]), at most one per STREAM_MIN_GAP, and otherwise
//! every STREAM_INTERVAL, which moves the newest bucket along when nothing
//! is stored and covers a consumer that cannot be heard. Streams of the
//! same grid share one query loop ([`feeds`]).
//!
//! A stream ends after STREAM_MAX_AGE, or when MAX_STREAMS are open and a
//! newer one needs its place ([`slots`]); the browser reconnects after the
//! `retry` the stream sets, and as every event carries whole buckets (the
//! page keys them by time), the reconnected stream neither skips nor
//! repeats a point. A client that stops reading is cut off by the server's
//! IDLE_TIMEOUT once its connection's buffers are full.

mod feeds;
mod slots;
pub mod wakes;

pub use feeds::Feeds;
pub use slots::StreamSlots;

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};
use tokio::time::{Duration, Instant, MissedTickBehavior};
use tokio_stream::wrappers::WatchStream;

use streamproc_event::EventTime;

use crate::error::ApiError;
use crate::metrics::StreamEnd;
use crate::pipeline::Snapshot;
use crate::schema::{BadParameter, ErrorBody, StreamQuery};
use crate::AppState;
use feeds::Update;
use streamproc_grid::step_and_last;
use streamproc_kit::auth::Unauthorized;

#[utoipa::path(
    get,
    path = "/api/v1/stream",
    summary = "Server-Sent Events: a series event with the newest buckets as soon as a consumer \
        stored something (at most one per STREAM_MIN_GAP, 50 ms) and at least every \
        STREAM_INTERVAL (250 ms), then, when the pipeline was probed since the last one (about \
        once a second), a pipeline event with its health",
    params(StreamQuery),
    responses(
        (status = 200, content_type = "text/event-stream",
            description = "event: series, data: the /api/v1/series JSON; then event: pipeline, \
                data: the /api/v1/pipeline JSON (once the first probe has finished)"),
        (status = 400, body = BadParameter,
            description = "A parameter is invalid, out of range or given twice; parameter names it"),
        (status = 401, response = Unauthorized),
        (status = 503, body = ErrorBody, description = "DISABLE is set"),
    ),
    security(("bearer" = []), ()),
)]
pub async fn stream(
    State(state): State<AppState>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let (step, last) =
        step_and_last(&pairs, EventTime::now().as_millis()).map_err(ApiError::BadParameter)?;
    let stores = state.source.stores()?.clone();
    let (slot, evicted) = state.streams.open();
    if evicted {
        state.metrics.stream_ended(StreamEnd::Evicted);
    }
    let latest = state.feeds.subscribe(&stores, step, last);
    let client = ClientCount::open(&state);
    let pipeline = state.pipeline.clone();
    // The pipeline is probed less often than a fast stream sends: each
    // snapshot is sent once, after the first series event that follows it.
    let mut last_sent: Option<Arc<Snapshot>> = None;
    // From the feed's newest update on (a stream that joins a running feed
    // starts with what it last sent).
    let events = WatchStream::new(latest)
        .filter_map(std::future::ready)
        .flat_map(move |update| {
            let newest = pipeline.as_ref().and_then(|latest| latest.borrow().clone());
            let pipeline = match (&newest, &last_sent) {
                (Some(new), Some(old)) if Arc::ptr_eq(new, old) => None,
                _ => newest,
            };
            if pipeline.is_some() {
                last_sent.clone_from(&pipeline);
            }
            // Naming `client` moves it into this closure, so the count and
            // the stream's place among MAX_STREAMS last exactly as long as
            // the stream.
            let _client = &client;
            let series = match &*update {
                Update::Series(json) => Event::default().event("series").data(json.as_str()),
                Update::Error(error) => Event::default().event("error").data(error.as_str()),
            };
            let pipeline = pipeline.map(|snapshot| {
                Event::default()
                    .event("pipeline")
                    .json_data(&*snapshot)
                    .unwrap_or_else(|e| Event::default().event("error").data(e.to_string()))
            });
            let events: Vec<Result<Event, Infallible>> =
                std::iter::once(series).chain(pipeline).map(Ok).collect();
            futures_util::stream::iter(events)
        });
    // The browser reconnects this soon after a stream ends.
    let retry = futures_util::stream::once(async {
        Ok::<_, Infallible>(Event::default().retry(RECONNECT_AFTER))
    });
    let (shutdown, max_age, metrics) = (
        state.shutdown.clone(),
        state.stream_max_age,
        state.metrics.clone(),
    );
    let end = async move {
        tokio::select! {
            // Without this, graceful shutdown would wait for every open stream.
            () = shutdown.cancelled() => {}
            () = slot.evicted() => {}
            () = tokio::time::sleep(max_age) => metrics.stream_ended(StreamEnd::MaxAge),
        }
    };
    Ok(Sse::new(retry.chain(events).take_until(end))
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// When each update of one feed is due: at once, then on the
/// first of a consumer's wake and `interval` after the last event, but
/// never sooner than `min_gap` after it. Wakes that come meanwhile are
/// answered by that one event; a slow store delays the next event rather
/// than queueing a burst.
fn due_times(interval: Duration, min_gap: Duration, wakes: wakes::Wakes) -> impl Stream<Item = ()> {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    futures_util::stream::unfold(
        (ticks, wakes, None::<Instant>),
        move |(mut ticks, mut wakes, last)| async move {
            match last {
                // The first tick of an interval is immediate.
                None => {
                    ticks.tick().await;
                }
                Some(last) => {
                    tokio::select! {
                        _ = ticks.tick() => {}
                        () = wakes::woken(&mut wakes) => {}
                    }
                    tokio::time::sleep_until(last + min_gap).await;
                    ticks.reset();
                }
            }
            wakes.borrow_and_update();
            Some(((), (ticks, wakes, Some(Instant::now()))))
        },
    )
}

/// How long the browser waits before it reconnects an ended stream: well
/// inside the page's own silence timeout, after which it would poll.
const RECONNECT_AFTER: std::time::Duration = std::time::Duration::from_millis(500);

/// Counts an open stream in the `stream_clients` gauge until it is dropped.
struct ClientCount {
    gauge: prometheus_client::metrics::gauge::Gauge,
}

impl ClientCount {
    fn open(state: &AppState) -> Self {
        state.metrics.stream_clients.inc();
        Self {
            gauge: state.metrics.stream_clients.clone(),
        }
    }
}

impl Drop for ClientCount {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamproc_grid::GridError;

    /// The times, from the stream's start, of the events `due_times` makes
    /// within `run`, with a consumer waking the stream at `wakes_at`.
    async fn due_at(wakes_at: &[u64], run: u64) -> Vec<u64> {
        let (sender, wakes) = tokio::sync::watch::channel(());
        let start = Instant::now();
        let due = due_times(Duration::from_millis(250), Duration::from_millis(50), wakes);
        let times = due
            .map(|()| start.elapsed().as_millis() as u64)
            .take_until(tokio::time::sleep(Duration::from_millis(run)))
            .collect::<Vec<_>>();
        let wake = async {
            for at in wakes_at {
                tokio::time::sleep_until(start + Duration::from_millis(*at)).await;
                sender.send_replace(());
            }
        };
        let (times, ()) = tokio::join!(times, wake);
        times
    }

    #[tokio::test(start_paused = true)]
    async fn a_wake_sends_at_once_a_burst_of_wakes_once_per_gap_and_silence_ticks() {
        assert_eq!(due_at(&[], 600).await, [0, 250, 500], "no wake: the tick");
        assert_eq!(
            due_at(&[100], 600).await,
            [0, 100, 350],
            "a wake, then the tick from it"
        );
        assert_eq!(
            due_at(&[100, 110, 120, 130], 200).await,
            [0, 100, 150],
            "wakes within the gap: one event after it"
        );
        assert_eq!(
            due_at(&[10], 100).await,
            [0, 50],
            "never sooner than the gap"
        );
    }

    const NOW: i64 = 1_700_000_123_456;

    fn parse(query: &[(&str, &str)]) -> Result<(i64, i64), GridError> {
        let pairs: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        step_and_last(&pairs, NOW)
    }

    #[test]
    fn defaults_and_limits() {
        assert_eq!(parse(&[]), Ok((1_000, 60)));
        assert_eq!(parse(&[("step", "10s"), ("last", "3")]), Ok((10_000, 3)));
        assert_eq!(parse(&[("last", "10000")]), Ok((1_000, 10_000)));
        assert_eq!(
            parse(&[("step", "47482d"), ("last", "10000")]),
            Ok((4_102_444_800_000, 10_000)),
            "buckets before 1970 are left out, not refused"
        );
    }

    /// The GETs of issue 9: each once made the grid's arithmetic wrap and
    /// the stream allocate without bound.
    #[test]
    fn extreme_values_are_400s_naming_the_parameter() {
        let u64_max = u64::MAX.to_string();
        let i64_max = i64::MAX.to_string();
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("last", "")], "last"),
            (&[("last", "0")], "last"),
            (&[("last", "-1")], "last"),
            (&[("last", "10001")], "last"),
            (&[("last", &i64_max)], "last"),
            (&[("last", &u64_max)], "last"),
            (&[("last", "9223372036854775")], "last"),
            (&[("step", "9223372036854775"), ("last", "2")], "step"),
            (&[("step", &i64_max)], "step"),
            (&[("step", &u64_max)], "step"),
            (&[("step", "9223372036854775807s")], "step"),
            (&[("step", "106751991167301d")], "step"),
            (&[("step", "1s"), ("step", "1s")], "step"),
        ];
        for (query, param) in cases {
            let error = parse(query).unwrap_err();
            assert_eq!(error.param(), *param, "{query:?}: {error}");
        }
    }
}
