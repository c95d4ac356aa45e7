//! Storing one batch: write its events to the sink and its dead letters to
//! the dead-letter topic, both durably, before the loop commits.
//!
//! A store that refuses the data ([`SinkError::Rejected`]) is not an outage:
//! the batch is split in halves, and halves again, until every refused
//! event stands alone. Only those go to the dead-letter topic, with the
//! store's reason; the rest are stored. For k bad events among n that is
//! about 2·k·log₂(n) extra writes, and none when the batch is clean. Only an
//! unavailable store makes the loop wait and retry.

use std::ops::Range;
use std::time::Instant;

use super::dead_letter::{DeadLetter, DeadLetters};
use super::stall::Stall;
use super::{Batch, ConsumerMetrics, Deadline, Sink, SinkError};
use streamproc_kit::backoff::Backoff;
use streamproc_kit::error::{BoxError, Chain};

/// What storing needs besides the batch and the sink.
pub(super) struct Store<'a> {
    pub dead_letters: &'a DeadLetters,
    pub metrics: &'a ConsumerMetrics,
    pub retry: &'a mut Backoff,
    pub deadline: &'a Deadline<'a>,
    pub stall: &'a Stall,
}

impl Store<'_> {
    /// Returns false when shutdown's drain time ran out before the batch
    /// was stored: it is then not committed, and is read again later.
    pub async fn batch<S: Sink>(&mut self, batch: &Batch, sink: &S) -> bool {
        let mut dead = batch.dead.clone();
        // Ranges of the batch's events still to write, the next on top.
        let mut pending: Vec<Range<usize>> = Vec::new();
        if !batch.events.is_empty() {
            pending.push(0..batch.events.len());
        }
        while let Some(range) = pending.pop() {
            let Some(written) = self.write(sink, batch, range.clone()).await else {
                return false;
            };
            match written {
                Ok(()) => {}
                Err(refusal) if range.len() == 1 => {
                    let reason = Chain(&*refusal).to_string();
                    let event = &batch.events[range.start];
                    tracing::error!(
                        error = %reason,
                        event_id = %event.id,
                        "store refused an event; dead-lettering it"
                    );
                    dead.push(batch.rejected(range.start, &reason));
                }
                Err(refusal) => {
                    tracing::warn!(
                        error = %Chain(&*refusal),
                        events = range.len(),
                        "store refused a write; splitting it to find the events it refuses"
                    );
                    let middle = range.start + range.len() / 2;
                    pending.push(middle..range.end);
                    pending.push(range.start..middle);
                }
            }
        }
        self.dead_letters(&dead).await
    }

    /// Writes `range` of the batch's events, retrying while the store is
    /// unavailable. `Some(Err(why))` when the store refused the data;
    /// `None` when the drain time ran out.
    async fn write<S: Sink>(
        &mut self,
        sink: &S,
        batch: &Batch,
        range: Range<usize>,
    ) -> Option<Result<(), BoxError>> {
        let events = &batch.events[range];
        loop {
            let started = Instant::now();
            match sink.write(events).await {
                Ok(()) => {
                    self.metrics
                        .write_seconds
                        .observe(started.elapsed().as_secs_f64());
                    self.metrics.written.inc_by(events.len() as u64);
                    self.metrics.batch_events.observe(events.len() as f64);
                    self.retry.reset();
                    return Some(Ok(()));
                }
                Err(SinkError::Rejected(refusal)) => {
                    self.metrics.write_rejections.inc();
                    self.retry.reset();
                    return Some(Err(refusal));
                }
                Err(error @ SinkError::Unavailable(_)) => {
                    self.metrics.write_failures.inc();
                    let reason = Chain(&error).to_string();
                    self.stall.failing(batch.records(), &reason, self.metrics);
                    let delay = self.retry.next_delay(None);
                    // The metric is write_failures: one line per failed try.
                    tracing::warn!(
                        error = %reason,
                        events = events.len(),
                        retry_in = ?delay,
                        "store write failed; retrying"
                    );
                    if !self.deadline.sleep(delay).await {
                        return None;
                    }
                }
            }
        }
    }

    /// Sends the dead letters, retrying until Kafka acknowledges them all.
    async fn dead_letters(&mut self, dead: &[DeadLetter]) -> bool {
        loop {
            match self.dead_letters.send_all(dead).await {
                Ok(()) => {
                    self.metrics.dead_lettered.inc_by(dead.len() as u64);
                    self.retry.reset();
                    return true;
                }
                Err(error) => {
                    let reason = format!("dead-lettering failed: {}", Chain(&error));
                    self.stall.failing(dead.len(), &reason, self.metrics);
                    let delay = self.retry.next_delay(None);
                    tracing::warn!(
                        error = %Chain(&error),
                        records = dead.len(),
                        retry_in = ?delay,
                        "dead-lettering failed; retrying"
                    );
                    if !self.deadline.sleep(delay).await {
                        return false;
                    }
                }
            }
        }
    }
}
