//! `GET /api/v1/stream`: Server-Sent Events carrying the newest buckets of
//! both series, for live charts. Each event is a `series` event whose data
//! is the same JSON as `/api/v1/series` answers, for the last `last` buckets
//! of `step` (the bucket in progress included).

use std::convert::Infallible;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use tokio::time::MissedTickBehavior;
use tokio_stream::wrappers::IntervalStream;

use crate::api::{now_ms, ApiError, SeriesBody};
use crate::grid::{parse_integer, parse_step, Grid, GridError};
use crate::AppState;

const DEFAULT_STEP_MS: i64 = 1_000;
const DEFAULT_LAST: i64 = 60;

#[derive(Debug, Default, serde::Deserialize)]
pub struct StreamParams {
    pub step: Option<String>,
    pub last: Option<String>,
}

impl StreamParams {
    fn step_and_last(&self) -> Result<(i64, i64), GridError> {
        let step = match &self.step {
            Some(step) => parse_step(step)?,
            None => DEFAULT_STEP_MS,
        };
        let last = match &self.last {
            Some(last) => parse_integer("last", last)?,
            None => DEFAULT_LAST,
        };
        if last < 1 {
            return Err(GridError::Unparsable {
                param: "last",
                value: last.to_string(),
                reason: "must be at least 1".into(),
            });
        }
        // Checks step and the number of buckets once, before streaming.
        Grid::latest(now_ms(), step, last)?;
        Ok((step, last))
    }
}

pub async fn stream(
    State(state): State<AppState>,
    Query(params): Query<StreamParams>,
) -> Result<Response, ApiError> {
    let (step, last) = params.step_and_last().map_err(ApiError::BadParameter)?;
    let stores = state.source.stores()?.clone();
    let mut ticks = tokio::time::interval(state.stream_interval);
    // A slow store delays the next event rather than queueing a burst.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let client = ClientCount::open(&state);
    let events = IntervalStream::new(ticks)
        .then(move |_| {
            let stores = stores.clone();
            // Naming `client` moves it into this closure, so the count
            // lasts exactly as long as the stream.
            let _client = &client;
            async move {
                let grid = Grid::latest(now_ms(), step, last).expect("checked before streaming");
                let body = SeriesBody::query(&stores, &grid).await;
                let event = Event::default()
                    .event("series")
                    .json_data(body)
                    .unwrap_or_else(|e| Event::default().event("error").data(e.to_string()));
                Ok::<_, Infallible>(event)
            }
        })
        // Without this, graceful shutdown would wait for every open stream.
        .take_until(state.shutdown.clone().cancelled_owned());
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// Counts an open stream in the `stream_clients` gauge until it is dropped.
struct ClientCount(prometheus_client::metrics::gauge::Gauge);

impl ClientCount {
    fn open(state: &AppState) -> Self {
        state.metrics.stream_clients.inc();
        Self(state.metrics.stream_clients.clone())
    }
}

impl Drop for ClientCount {
    fn drop(&mut self) {
        self.0.dec();
    }
}
