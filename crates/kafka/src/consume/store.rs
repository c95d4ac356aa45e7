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

use super::dead_letter::{DeadLetter, DeadLetters, SendDeadLetters};
use super::stall::Stall;
use super::{Batch, ConsumerMetrics, Deadline, Sink, SinkError};
use streamproc_kit::backoff::Backoff;
use streamproc_kit::error::{BoxError, Chain};

/// What storing needs besides the batch and the sink. `D` is where dead
/// letters go: the dead-letter topic, or a recorder in the unit tests.
pub(super) struct Store<'a, D: SendDeadLetters = DeadLetters> {
    pub dead_letters: &'a D,
    pub metrics: &'a ConsumerMetrics,
    pub retry: &'a mut Backoff,
    pub deadline: &'a Deadline<'a>,
    pub stall: &'a Stall,
}

impl<D: SendDeadLetters> Store<'_, D> {
    /// Returns false when shutdown's drain time ran out before the batch
    /// was stored: it is then not committed, and is read again later.
    pub async fn batch<S: Sink>(&mut self, batch: &Batch, sink: &S) -> bool {
        if !self.record_accepted(sink, batch).await {
            return false;
        }
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
                    let event = &batch.events[range.start].event;
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
                    if !self.back_off(batch, &error, events.len(), "events").await {
                        return None;
                    }
                }
            }
        }
    }

    /// Records the batch's valid events, both routes', in the sink's ledger
    /// of accepted events, retrying while the store is unavailable. A
    /// refusal is logged and passed over: the ledger is bookkeeping, and
    /// holding the partition for it would stop the pipeline; the
    /// reconciliation then shows those events as unaccounted for. False
    /// when the drain time ran out.
    async fn record_accepted<S: Sink>(&mut self, sink: &S, batch: &Batch) -> bool {
        let events = batch.events.len() + batch.others.len();
        loop {
            match sink.record_accepted(&batch.events, &batch.others).await {
                Ok(()) => {
                    self.retry.reset();
                    return true;
                }
                Err(SinkError::Rejected(refusal)) => {
                    tracing::error!(
                        error = %Chain(&*refusal),
                        events,
                        "the ledger refused the batch; reconciliation will show its events as unaccounted for"
                    );
                    return true;
                }
                Err(error @ SinkError::Unavailable(_)) => {
                    if !self.back_off(batch, &error, events, "ledger").await {
                        return false;
                    }
                }
            }
        }
    }

    /// After a write the store could not take: counts it, tells `/readyz`,
    /// logs it and sleeps the backoff. False when the drain time ran out.
    async fn back_off(
        &mut self,
        batch: &Batch,
        error: &SinkError,
        events: usize,
        step: &'static str,
    ) -> bool {
        self.metrics.write_failures.inc();
        let reason = Chain(error).to_string();
        self.stall.failing(batch.records(), &reason, self.metrics);
        let delay = self.retry.next_delay(None);
        // The metric is write_failures: one line per failed try.
        tracing::warn!(
            error = %reason,
            events,
            step,
            retry_in = ?delay,
            "store write failed; retrying"
        );
        self.deadline.sleep(delay).await
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

/// The loop's storing logic under tokio's paused clock: an in-test sink and
/// dead-letter recorder stand for the store and the dead-letter topic, so
/// the waits are exact and nothing needs a broker or a database.
#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::future::{ready, Future};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use prometheus_client::registry::Registry;
    use tokio::time::Instant;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::consume::dead_letter::DeadLetterError;
    use crate::producer::SendError;
    use streamproc_event::{Amount, Event, EventId, EventTime, LogPosition, LoggedEvent};

    const TOPIC: &str = "events";
    const RETRY_INITIAL: Duration = Duration::from_millis(100);
    const RETRY_MAX: Duration = Duration::from_secs(1);
    const STALL_AFTER: Duration = Duration::from_secs(2);
    /// A tokio timer fires on the first millisecond tick at or after its
    /// deadline.
    const TICK: Duration = Duration::from_millis(1);

    fn event(n: usize) -> Event {
        Event::new(
            EventId::parse(&format!("e-{n}")).unwrap(),
            EventTime::from_millis(1_700_000_000_000 + n as i64).unwrap(),
            Amount::new(n as f64 + 0.5).unwrap(),
        )
    }

    fn events(n: usize) -> Vec<Event> {
        (0..n).map(event).collect()
    }

    fn unavailable() -> SinkError {
        SinkError::Unavailable("connection refused".into())
    }

    /// One write the sink was asked for.
    #[derive(Debug, Clone)]
    struct Call {
        /// Since the sink was made (the test's start).
        at: Duration,
        ids: Vec<String>,
        ok: bool,
        /// What `/readyz` said about the loop at that moment.
        stalled: Option<String>,
    }

    type Answer = Box<dyn Fn(Duration, &[Event]) -> Result<(), SinkError> + Send + Sync>;

    /// A sink that answers each write as `answer` says (given the time since
    /// the test began and the events) and records every call.
    struct ScriptedSink {
        started: Instant,
        answer: Answer,
        stall: Stall,
        calls: Mutex<Vec<Call>>,
    }

    impl ScriptedSink {
        fn new(
            stall: &Stall,
            answer: impl Fn(Duration, &[Event]) -> Result<(), SinkError> + Send + Sync + 'static,
        ) -> Self {
            Self {
                started: Instant::now(),
                answer: Box::new(answer),
                stall: stall.clone(),
                calls: Mutex::default(),
            }
        }

        fn calls(&self) -> Vec<Call> {
            self.calls.lock().unwrap().clone()
        }
    }

    impl Sink for ScriptedSink {
        fn write(
            &self,
            logged: &[LoggedEvent],
        ) -> impl Future<Output = Result<(), SinkError>> + Send {
            let at = self.started.elapsed();
            let events: Vec<Event> = logged.iter().map(|l| l.event.clone()).collect();
            let answer = (self.answer)(at, &events);
            self.calls.lock().unwrap().push(Call {
                at,
                ids: events.iter().map(|e| e.id.as_str().to_owned()).collect(),
                ok: answer.is_ok(),
                stalled: self.stall.check().err().map(|e| e.to_string()),
            });
            ready(answer)
        }

        fn check(&self) -> impl Future<Output = Result<(), SinkError>> + Send {
            ready(Ok(()))
        }
    }

    /// A sink that keeps a ledger: answers each `record_accepted` as
    /// `answer` says (given the time since the test began), records the ids
    /// each call was given, and when each write came.
    struct LedgerSink {
        started: Instant,
        answer: Box<dyn Fn(Duration) -> Result<(), SinkError> + Send + Sync>,
        ledger_calls: Mutex<Vec<(Duration, Vec<String>)>>,
        writes: Mutex<Vec<Duration>>,
    }

    impl LedgerSink {
        fn new(answer: impl Fn(Duration) -> Result<(), SinkError> + Send + Sync + 'static) -> Self {
            Self {
                started: Instant::now(),
                answer: Box::new(answer),
                ledger_calls: Mutex::default(),
                writes: Mutex::default(),
            }
        }
    }

    impl Sink for LedgerSink {
        fn write(&self, _: &[LoggedEvent]) -> impl Future<Output = Result<(), SinkError>> + Send {
            self.writes.lock().unwrap().push(self.started.elapsed());
            ready(Ok(()))
        }

        fn record_accepted(
            &self,
            ours: &[LoggedEvent],
            others: &[LoggedEvent],
        ) -> impl Future<Output = Result<(), SinkError>> + Send {
            let at = self.started.elapsed();
            let ids = ours
                .iter()
                .chain(others)
                .map(|e| e.event.id.as_str().to_owned())
                .collect();
            self.ledger_calls.lock().unwrap().push((at, ids));
            ready((self.answer)(at))
        }

        fn check(&self) -> impl Future<Output = Result<(), SinkError>> + Send {
            ready(Ok(()))
        }
    }

    /// A batch of two events of this route and one of the other.
    fn batch_with_others() -> Batch {
        let mut batch = Batch::for_tests(TOPIC, events(2), Vec::new());
        batch.others.push(LoggedEvent {
            event: event(7),
            position: LogPosition {
                partition: 0,
                offset: 2,
            },
        });
        batch
    }

    #[tokio::test(start_paused = true)]
    async fn the_ledger_gets_both_routes_events_before_the_write_and_waits_for_its_store() {
        let parts = Parts::new(0);
        let back_at = Duration::from_secs(2);
        let sink = LedgerSink::new(move |at| {
            if at < back_at {
                Err(unavailable())
            } else {
                Ok(())
            }
        });
        let stored = parts
            .store(
                &sink,
                &batch_with_others(),
                &CancellationToken::new(),
                Duration::ZERO,
            )
            .await;
        assert!(stored);
        let calls = sink.ledger_calls.lock().unwrap().clone();
        assert!(calls.len() >= 3, "retried while unavailable: {calls:?}");
        assert!(calls.iter().all(|(_, ids)| ids == &["e-0", "e-1", "e-7"]));
        let recorded_at = calls.last().unwrap().0;
        assert!(recorded_at >= back_at);
        let writes = sink.writes.lock().unwrap().clone();
        assert_eq!(writes, [recorded_at], "written once, after the ledger");
        assert!(parts.metrics.write_failures.get() >= 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_ledger_that_refuses_the_batch_does_not_hold_it() {
        let parts = Parts::new(0);
        let sink = LedgerSink::new(|_| Err(SinkError::Rejected("value too long".into())));
        let stored = parts
            .store(
                &sink,
                &batch_with_others(),
                &CancellationToken::new(),
                Duration::ZERO,
            )
            .await;
        assert!(stored, "the events are stored all the same");
        assert_eq!(sink.ledger_calls.lock().unwrap().len(), 1, "not retried");
        assert_eq!(sink.writes.lock().unwrap().len(), 1);
    }

    /// Stands for the dead-letter topic: refuses the first `failures` sends
    /// (as Kafka not acknowledging), then keeps what it is sent.
    struct DeadLetterLog {
        failures: usize,
        tries: AtomicUsize,
        sent: Mutex<Vec<DeadLetter>>,
    }

    impl DeadLetterLog {
        fn failing(failures: usize) -> Self {
            Self {
                failures,
                tries: AtomicUsize::new(0),
                sent: Mutex::default(),
            }
        }

        fn tries(&self) -> usize {
            self.tries.load(Ordering::SeqCst)
        }

        /// The keys of what was sent, as text.
        fn sent_keys(&self) -> Vec<String> {
            self.sent
                .lock()
                .unwrap()
                .iter()
                .map(|d| String::from_utf8(d.key.clone().unwrap_or_default()).unwrap())
                .collect()
        }
    }

    impl SendDeadLetters for DeadLetterLog {
        fn send_all(
            &self,
            letters: &[DeadLetter],
        ) -> impl Future<Output = Result<(), DeadLetterError>> + Send {
            if letters.is_empty() {
                return ready(Ok(()));
            }
            if self.tries.fetch_add(1, Ordering::SeqCst) < self.failures {
                return ready(Err(DeadLetterError::Send(SendError::QueueFull)));
            }
            self.sent.lock().unwrap().extend_from_slice(letters);
            ready(Ok(()))
        }
    }

    /// What the loop hands the store besides the batch and the sink.
    struct Parts {
        metrics: ConsumerMetrics,
        stall: Stall,
        dead_letters: DeadLetterLog,
    }

    impl Parts {
        fn new(dead_letter_failures: usize) -> Self {
            Self {
                metrics: ConsumerMetrics::register(&mut Registry::default()),
                stall: Stall::new(STALL_AFTER),
                dead_letters: DeadLetterLog::failing(dead_letter_failures),
            }
        }

        /// Stores `batch` as the consume loop does: retries from
        /// RETRY_INITIAL up to RETRY_MAX, `drain` after `shutdown`.
        async fn store<S: Sink>(
            &self,
            sink: &S,
            batch: &Batch,
            shutdown: &CancellationToken,
            drain: Duration,
        ) -> bool {
            let mut retry = Backoff::new(RETRY_INITIAL, RETRY_MAX);
            let deadline = Deadline::new(shutdown, drain);
            let mut store = Store {
                dead_letters: &self.dead_letters,
                metrics: &self.metrics,
                retry: &mut retry,
                deadline: &deadline,
                stall: &self.stall,
            };
            store.batch(batch, sink).await
        }
    }

    /// A malformed record read after the batch's events.
    fn malformed(offset: i64) -> DeadLetter {
        DeadLetter {
            source_topic: TOPIC.to_owned(),
            source: LogPosition {
                partition: 0,
                offset,
            },
            key: Some(b"garbage".to_vec()),
            payload: Some(b"not json".to_vec()),
            reason: "not valid JSON".to_owned(),
            refused_by: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_unavailable_sink_is_retried_with_backoff_until_it_answers_and_the_stall_is_reported(
    ) {
        let parts = Parts::new(0);
        let back_at = Duration::from_secs(4);
        let sink = ScriptedSink::new(&parts.stall, move |at, _| {
            if at < back_at {
                Err(unavailable())
            } else {
                Ok(())
            }
        });
        let batch = Batch::for_tests(TOPIC, events(3), Vec::new());
        let started = Instant::now();
        let stored = parts
            .store(&sink, &batch, &CancellationToken::new(), Duration::ZERO)
            .await;
        assert!(stored, "stored once the sink answers");

        let calls = sink.calls();
        let (last, failed) = calls.split_last().unwrap();
        assert!(last.ok && last.at >= back_at, "{calls:?}");
        assert_eq!(started.elapsed(), last.at, "done at the write that worked");
        assert!(failed.iter().all(|c| !c.ok), "{calls:?}");
        assert!(
            calls.iter().all(|c| c.ids == ["e-0", "e-1", "e-2"]),
            "every try writes the whole batch: {calls:?}"
        );
        // The waits double from RETRY_INITIAL up to RETRY_MAX, each ±25%.
        for (k, pair) in calls.windows(2).enumerate() {
            let waited = pair[1].at - pair[0].at;
            let base = RETRY_INITIAL.saturating_mul(1 << k.min(10)).min(RETRY_MAX);
            assert!(
                waited >= base.mul_f64(0.75) && waited <= base.mul_f64(1.25) + TICK,
                "wait {k}: {waited:?} for a base of {base:?}: {calls:?}"
            );
        }
        // 0.1 + 0.2 + 0.4 + 0.8 s, then 1 s apart: at least 5 tries in 4 s.
        assert!(failed.len() >= 5, "{calls:?}");

        // /readyz: fine until the batch has failed for STALL_AFTER, then
        // stalled, naming the records waiting and the last error.
        for call in &calls {
            match &call.stalled {
                None => assert!(call.at < STALL_AFTER, "{call:?}"),
                Some(reason) => {
                    assert!(call.at >= STALL_AFTER, "{call:?}");
                    assert!(
                        reason.contains("3 records") && reason.contains("connection refused"),
                        "{reason}"
                    );
                }
            }
        }
        assert!(
            calls.iter().any(|c| c.stalled.is_some()),
            "the stall was reported: {calls:?}"
        );
        // The loop clears the stall only once the batch is committed.
        assert!(parts.stall.check().is_err());
        let last_failure = failed.last().unwrap().at.as_secs() as i64;
        assert_eq!(parts.metrics.stalled_seconds.get(), last_failure);

        assert_eq!(parts.metrics.write_failures.get(), failed.len() as u64);
        assert_eq!(parts.metrics.written.get(), 3);
        assert_eq!(parts.metrics.write_rejections.get(), 0);
        assert_eq!(parts.metrics.dead_lettered.get(), 0);
        assert_eq!(parts.dead_letters.tries(), 0, "no dead letters to send");
    }

    #[tokio::test(start_paused = true)]
    async fn refused_events_are_found_by_splitting_and_only_they_are_dead_lettered() {
        let parts = Parts::new(0);
        let refused: Arc<BTreeSet<String>> = Arc::new(
            ["e-3", "e-10", "e-11"]
                .into_iter()
                .map(str::to_owned)
                .collect(),
        );
        let sink = ScriptedSink::new(&parts.stall, {
            let refused = refused.clone();
            move |_, events| match events.iter().find(|e| refused.contains(e.id.as_str())) {
                Some(e) => Err(SinkError::Rejected(
                    format!("check constraint violated by {}", e.id.as_str()).into(),
                )),
                None => Ok(()),
            }
        });
        let total = 20;
        let batch = Batch::for_tests(TOPIC, events(total), vec![malformed(total as i64)]);
        let started = Instant::now();
        let stored = parts
            .store(&sink, &batch, &CancellationToken::new(), Duration::ZERO)
            .await;
        assert!(stored);
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "a refusal is not an outage: nothing is waited out"
        );

        let calls = sink.calls();
        assert_eq!(calls[0].ids.len(), total, "the whole batch first");
        // Every other event is written exactly once, in writes the store
        // took; every refused event was finally tried alone.
        let mut written: Vec<String> = calls
            .iter()
            .filter(|c| c.ok)
            .flat_map(|c| c.ids.clone())
            .collect();
        written.sort();
        let mut good: Vec<String> = (0..total)
            .map(|n| format!("e-{n}"))
            .filter(|id| !refused.contains(id))
            .collect();
        good.sort();
        assert_eq!(written, good, "{calls:?}");
        for id in refused.iter() {
            assert!(
                calls.iter().any(|c| !c.ok && c.ids == [id.as_str()]),
                "{id} tried alone: {calls:?}"
            );
        }
        // About 2·k·log₂(n) extra writes for k refused among n.
        assert!(calls.len() <= 1 + 2 * 3 * 5, "{} writes", calls.len());

        // The dead letters: the malformed record, then exactly the refused
        // events, each with the store's reason and where it came from.
        assert_eq!(
            parts.dead_letters.sent_keys(),
            ["garbage", "e-3", "e-10", "e-11"]
        );
        let sent = parts.dead_letters.sent.lock().unwrap().clone();
        for letter in &sent[1..] {
            let id = String::from_utf8(letter.key.clone().unwrap()).unwrap();
            let n: i64 = id.trim_start_matches("e-").parse().unwrap();
            assert_eq!(
                letter.reason,
                format!("rejected by the store: check constraint violated by {id}")
            );
            assert_eq!(
                (letter.source_topic.as_str(), letter.source),
                (
                    TOPIC,
                    LogPosition {
                        partition: 0,
                        offset: n
                    }
                )
            );
            assert_eq!(
                letter.payload.as_deref(),
                Some(event(n as usize).to_json_bytes().as_slice())
            );
        }

        let metrics = &parts.metrics;
        assert_eq!(metrics.written.get(), (total - 3) as u64);
        assert_eq!(metrics.dead_lettered.get(), 4);
        assert_eq!(
            metrics.write_rejections.get(),
            calls.iter().filter(|c| !c.ok).count() as u64
        );
        assert_eq!(metrics.write_failures.get(), 0);
        assert!(parts.stall.check().is_ok(), "refusals are not a stall");
    }

    #[tokio::test(start_paused = true)]
    async fn dead_letters_kafka_does_not_take_are_retried_without_writing_again() {
        let parts = Parts::new(2);
        let sink = ScriptedSink::new(&parts.stall, |_, _| Ok(()));
        let batch = Batch::for_tests(TOPIC, events(4), vec![malformed(4)]);
        let started = Instant::now();
        let stored = parts
            .store(&sink, &batch, &CancellationToken::new(), Duration::ZERO)
            .await;
        assert!(stored);
        assert_eq!(sink.calls().len(), 1, "the events are written once");
        assert_eq!(parts.dead_letters.tries(), 3);
        assert_eq!(parts.dead_letters.sent_keys(), ["garbage"]);
        let waited = started.elapsed();
        assert!(
            waited >= (RETRY_INITIAL * 3).mul_f64(0.75)
                && waited <= (RETRY_INITIAL * 3).mul_f64(1.25) + 2 * TICK,
            "two waits of the backoff: {waited:?}"
        );
        assert_eq!(parts.metrics.dead_lettered.get(), 1);
        let stalled = parts.stall.check();
        assert!(stalled.is_ok(), "not for STALL_AFTER yet: {stalled:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_drain_deadline_on_shutdown_stops_the_retries() {
        let parts = Parts::new(0);
        let sink = ScriptedSink::new(&parts.stall, |_, _| Err(unavailable()));
        let batch = Batch::for_tests(TOPIC, events(2), Vec::new());
        let shutdown = CancellationToken::new();
        let shutdown_at = Duration::from_secs(2);
        let drain = Duration::from_secs(3);
        let started = Instant::now();
        let (stored, ()) = tokio::join!(parts.store(&sink, &batch, &shutdown, drain), async {
            tokio::time::sleep(shutdown_at).await;
            shutdown.cancel();
        });
        assert!(
            !stored,
            "not stored: the loop does not commit it, and it is read again"
        );
        let took = started.elapsed();
        let ends = shutdown_at + drain;
        assert!(
            took >= ends && took <= ends + TICK,
            "the retries stop when the drain time ends: {took:?}"
        );
        let calls = sink.calls();
        assert!(
            calls.iter().any(|c| c.at > shutdown_at && c.at < ends),
            "the retries go on during the drain: {calls:?}"
        );
        let last = calls.last().unwrap();
        assert!(
            last.at >= ends && last.at <= ends + TICK,
            "a last try when the drain time ends, none after: {calls:?}"
        );
        assert_eq!(parts.metrics.write_failures.get(), calls.len() as u64);
        assert_eq!(parts.metrics.written.get(), 0);
        assert_eq!(parts.dead_letters.tries(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn after_shutdown_a_batch_gets_the_drain_time_and_no_more() {
        let shut = CancellationToken::new();
        shut.cancel();

        // No drain time: one try, no wait.
        let parts = Parts::new(0);
        let sink = ScriptedSink::new(&parts.stall, |_, _| Err(unavailable()));
        let batch = Batch::for_tests(TOPIC, events(2), Vec::new());
        let started = Instant::now();
        assert!(!parts.store(&sink, &batch, &shut, Duration::ZERO).await);
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert_eq!(sink.calls().len(), 1);

        // A sink that answers within the drain time: the batch is stored.
        let parts = Parts::new(0);
        let back_at = Duration::from_millis(1500);
        let sink = ScriptedSink::new(&parts.stall, move |at, _| {
            if at < back_at {
                Err(unavailable())
            } else {
                Ok(())
            }
        });
        assert!(
            parts
                .store(&sink, &batch, &shut, Duration::from_secs(3))
                .await
        );
        assert_eq!(parts.metrics.written.get(), 2);

        // Dead letters Kafka never takes: sending stops at the drain's end
        // too (the events were written; written again after the restart).
        let parts = Parts::new(usize::MAX);
        let sink = ScriptedSink::new(&parts.stall, |_, _| Ok(()));
        let batch = Batch::for_tests(TOPIC, events(2), vec![malformed(2)]);
        let started = Instant::now();
        let drain = Duration::from_secs(2);
        assert!(!parts.store(&sink, &batch, &shut, drain).await);
        let took = started.elapsed();
        assert!(took >= drain && took <= drain + TICK, "{took:?}");
        assert!(parts.dead_letters.tries() >= 3);
        assert_eq!(parts.metrics.dead_lettered.get(), 0);
        assert_eq!(sink.calls().len(), 1);
    }
}
