//! event-producer: generates events at a steady rate and sends them to
//! event-api. See the README beside this crate.

mod buffer;
mod config;
mod generator;
mod metrics;
mod sender;

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use axum::{routing::get, Router};
use streamproc_event::EventTime;
use streamproc_kit::metrics::Registry;
use streamproc_kit::ops;
use streamproc_kit::server;
use tokio::net::TcpListener;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use buffer::Buffer;
pub use config::Config;
use generator::Generator;
use metrics::ProducerMetrics;
use sender::{SendError, Sender};

pub const DEFAULT_PORT: u16 = streamproc_event::names::EVENT_PRODUCER_PORT;

/// What a run did, for its last log line and its exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub generated: u64,
    pub sent: u64,
    /// Dropped from a full buffer, rejected by event-api, or still buffered
    /// when the drain timed out.
    pub lost: u64,
}

/// Runs until `shutdown` is cancelled or COUNT/DURATION is reached, then
/// tries for up to DRAIN_TIMEOUT to send what is still buffered.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<Summary> {
    config.validate()?;
    // Read before anything starts: a token that cannot be read stops the run.
    let token = config.token.token()?;
    let mut registry = Registry::default();
    let metrics = ProducerMetrics::register(&mut registry);
    let app = ops::with_probes_and_metrics(
        Router::new().route("/", get(ops::root_ok)),
        registry,
        ops::always_ready(),
    );
    let server_stop = CancellationToken::new();
    let connections = config.serve.connections.clone();
    let server = tokio::spawn({
        let stop = server_stop.clone();
        async move { server::serve(listener, app, &connections, stop).await }
    });

    let generator = Generator::new(config.seed, config.amount_min..config.amount_max);
    let buffer = Arc::new(Buffer::new(config.max_buffered_events));
    if config.serve.disable {
        tracing::info!(
            run = generator.run_id(),
            rate = config.rate,
            "generating events; DISABLE is set: nothing is sent"
        );
    } else {
        tracing::info!(
            run = generator.run_id(),
            rate = config.rate,
            interval = ?config.interval,
            event_api = %config.target_url(),
            "generating and sending events"
        );
    }

    // Generation stops on a signal or at COUNT/DURATION; sending goes on to
    // drain the buffer.
    let generating = shutdown.child_token();
    let generation = tokio::spawn(generate(
        config.clone(),
        generator,
        buffer.clone(),
        metrics.clone(),
        generating.clone(),
    ));
    let summary = if config.serve.disable {
        let generated = generation.await?;
        Summary {
            generated,
            sent: 0,
            lost: 0,
        }
    } else {
        let sender = Sender::new(
            config.target_url(),
            config.plain_text,
            config.request_timeout,
            token,
        )?;
        let delivery = Delivery {
            sender,
            buffer,
            metrics: metrics.clone(),
            config: config.clone(),
        };
        let sending = tokio::spawn(async move { delivery.run(generating).await });
        let generated = generation.await?;
        let sent = sending.await?;
        Summary {
            generated,
            sent,
            lost: generated.saturating_sub(sent),
        }
    };
    server_stop.cancel();
    server.await??;
    tracing::info!(
        generated = summary.generated,
        sent = summary.sent,
        lost = summary.lost,
        "event-producer stopped"
    );
    Ok(summary)
}

/// Generates events at `rate` per second into the buffer until `stop` is
/// cancelled or COUNT/DURATION is reached; cancels `stop` itself then, so the
/// sender knows to drain. Returns how many events it made.
async fn generate(
    config: Config,
    mut generator: Generator,
    buffer: Arc<Buffer>,
    metrics: ProducerMetrics,
    stop: CancellationToken,
) -> u64 {
    let started = Instant::now();
    let period = Duration::from_secs_f64(1.0 / config.rate);
    let mut ticks =
        tokio::time::interval(period.clamp(Duration::from_millis(1), Duration::from_millis(100)));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut made: u64 = 0;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticks.tick() => {}
        }
        let elapsed = started.elapsed();
        // Catch up on what is due rather than one event a tick, so the rate
        // holds even when ticks are late; the first event is due at once.
        let mut due = (elapsed.as_secs_f64() * config.rate) as u64 + 1;
        if let Some(count) = config.count {
            due = due.min(count);
        }
        let now = EventTime::now();
        while made < due {
            let event = generator.next_event(now);
            made += 1;
            metrics.generated.inc();
            if config.serve.disable {
                tracing::debug!(id = %event.id, amount = event.amount.value(), "generated (not sent)");
                continue;
            }
            let dropped = buffer.push(event);
            if dropped > 0 {
                metrics.dropped.inc_by(dropped as u64);
                tracing::warn!(
                    capacity = config.max_buffered_events,
                    events = dropped,
                    "buffer full; dropped the oldest events"
                );
            }
        }
        metrics.buffered.set(buffer.len() as i64);
        let count_reached = config.count.is_some_and(|count| made >= count);
        let time_is_up = config.duration.is_some_and(|d| elapsed >= d);
        if count_reached || time_is_up {
            break;
        }
    }
    stop.cancel();
    made
}

/// Sends the buffer's events every SEND_INTERVAL, backing off after
/// failures, and drains the buffer once generation has stopped.
struct Delivery {
    sender: Sender,
    buffer: Arc<Buffer>,
    metrics: ProducerMetrics,
    config: Config,
}

const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl Delivery {
    /// Returns how many events event-api acknowledged.
    async fn run(self, generating: CancellationToken) -> u64 {
        let mut sent = 0;
        let mut backoff = Backoff::default();
        let mut ticks = tokio::time::interval(self.config.interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        while !generating.is_cancelled() {
            tokio::select! {
                () = generating.cancelled() => break,
                _ = ticks.tick() => {}
            }
            if backoff.waiting() {
                continue;
            }
            sent += self.send_buffered(&mut backoff).await;
        }

        let deadline = Instant::now() + self.config.drain_timeout;
        while self.buffer.len() > 0 && Instant::now() < deadline {
            tokio::time::sleep_until(backoff.next_attempt.min(deadline)).await;
            sent += self.send_buffered(&mut backoff).await;
        }
        let unsent = self.buffer.take(usize::MAX).len() as u64;
        if unsent > 0 {
            tracing::error!(
                events = unsent,
                "events still unsent when the drain timed out"
            );
            self.metrics.dropped.inc_by(unsent);
        }
        self.metrics.buffered.set(0);
        sent
    }

    /// Sends batches until the buffer is empty or a send fails. Returns how
    /// many events were acknowledged.
    async fn send_buffered(&self, backoff: &mut Backoff) -> u64 {
        let mut sent = 0;
        loop {
            let batch = self.buffer.take(self.config.max_batch_events);
            if batch.is_empty() {
                break;
            }
            match self.sender.send(&batch).await {
                Ok(()) => {
                    backoff.reset();
                    sent += batch.len() as u64;
                    self.metrics.sent.inc_by(batch.len() as u64);
                    if self.config.echo {
                        echo(&batch);
                    }
                }
                Err(SendError::Rejected { status, body }) => {
                    // Retrying cannot help: the same batch would be refused again.
                    tracing::error!(
                        events = batch.len(),
                        status = status.as_u16(),
                        body = %body,
                        "event-api rejected the events"
                    );
                    self.metrics.rejected.inc_by(batch.len() as u64);
                }
                Err(SendError::Retry { reason, after }) => {
                    self.metrics.send_failures.inc();
                    let delay = backoff.fail(after);
                    tracing::warn!(
                        events = batch.len(),
                        error = %reason,
                        retry_in = ?delay,
                        "send failed; retrying"
                    );
                    let dropped = self.buffer.put_back(batch);
                    if dropped > 0 {
                        self.metrics.dropped.inc_by(dropped as u64);
                        tracing::warn!(events = dropped, "buffer full; dropped the oldest events");
                    }
                    break;
                }
            }
        }
        self.metrics.buffered.set(self.buffer.len() as i64);
        sent
    }
}

/// When the next send may be tried, after failures.
struct Backoff {
    delays: streamproc_kit::backoff::Backoff,
    next_attempt: Instant,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            delays: streamproc_kit::backoff::Backoff::new(FIRST_BACKOFF, MAX_BACKOFF),
            next_attempt: Instant::now(),
        }
    }
}

impl Backoff {
    fn waiting(&self) -> bool {
        Instant::now() < self.next_attempt
    }

    fn reset(&mut self) {
        self.delays.reset();
        self.next_attempt = Instant::now();
    }

    /// Records a failure and returns how long to wait before the next try.
    fn fail(&mut self, server_asked: Option<Duration>) -> Duration {
        let delay = self.delays.next_delay(server_asked);
        self.next_attempt = Instant::now() + delay;
        delay
    }
}

fn echo(events: &[streamproc_event::Event]) {
    let mut out = std::io::stdout().lock();
    for event in events {
        let _ = out.write_all(&event.to_json_bytes());
        let _ = out.write_all(b"\n");
    }
    let _ = out.flush();
}
