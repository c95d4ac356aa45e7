//! Committing stored batches' offsets in the background, coalesced: the
//! loop hands over each stored batch's offsets and goes on to the next
//! batch; one task commits whatever is owed, one commit at a time, and
//! the offsets owed while a commit is in flight go out together in the
//! next.
//!
//! Why: a commit is a round trip to the group's coordinator, and on tansu
//! with SQLite storage it is a slow one (about a second under a full drain,
//! measured 2026-12-05) that also holds the broker's fetches back. One
//! commit per batch, awaited in line, held consumer-high's drain to 0.5–0.6
//! of the broker's read rate; coalesced, it drains at the read rate.
//!
//! At-least-once still holds: offsets are handed over only once their
//! batch is stored, a partition's offset only grows, and one commit is in
//! flight at a time, so a later offset is never overwritten by an earlier
//! one. What a crash loses is at most the offsets owed since the last
//! commit: those records are read again, which the idempotent writes make
//! harmless.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer as _, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::context::StatsContext;
use super::ConsumerMetrics;

/// librdkafka's synchronous commit waits for the coordinator without a
/// limit of its own: a broker that accepts connections but never answers
/// would hold the commits (and shutdown) forever. Past this the task goes
/// on; the blocked thread ends when librdkafka gives up.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);

/// The offsets stored but not yet committed: per partition, the offset
/// after its last stored record.
#[derive(Default)]
struct Owed {
    offsets: Mutex<BTreeMap<i32, i64>>,
    added: Notify,
}

/// The loop's side of the committing task.
pub(super) struct Commits {
    owed: Arc<Owed>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Commits {
    /// Starts the committing task, in the caller's span.
    pub fn start(
        kafka: Arc<StreamConsumer<StatsContext>>,
        topic: String,
        metrics: ConsumerMetrics,
    ) -> Self {
        let owed = Arc::new(Owed::default());
        let stop = CancellationToken::new();
        let task = tokio::spawn(
            commit_owed(kafka, topic, metrics, owed.clone(), stop.clone()).in_current_span(),
        );
        Self { owed, stop, task }
    }

    /// Owes the commit of `next_offsets`, a stored batch's.
    pub fn owe(&self, next_offsets: &BTreeMap<i32, i64>) {
        let mut owed = self.owed.offsets.lock().expect("not poisoned");
        for (&partition, &next) in next_offsets {
            let entry = owed.entry(partition).or_insert(next);
            *entry = (*entry).max(next);
        }
        drop(owed);
        self.owed.added.notify_one();
    }

    /// Commits what is still owed and ends the task: before the loop
    /// returns.
    pub async fn finish(self) {
        self.stop.cancel();
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "commit task failed; these records will be read again");
        }
    }
}

async fn commit_owed(
    kafka: Arc<StreamConsumer<StatsContext>>,
    topic: String,
    metrics: ConsumerMetrics,
    owed: Arc<Owed>,
    stop: CancellationToken,
) {
    loop {
        let stopping = tokio::select! {
            () = owed.added.notified() => false,
            () = stop.cancelled() => true,
        };
        let offsets = std::mem::take(&mut *owed.offsets.lock().expect("not poisoned"));
        if !offsets.is_empty() {
            commit(&kafka, &topic, &offsets, &metrics).await;
        }
        if stopping {
            return;
        }
    }
}

/// A failed commit is logged, not retried: its records are read again
/// later (it happens when a rebalance moved the partition away).
async fn commit(
    kafka: &Arc<StreamConsumer<StatsContext>>,
    topic: &str,
    offsets: &BTreeMap<i32, i64>,
    metrics: &ConsumerMetrics,
) {
    let mut list = TopicPartitionList::new();
    for (&partition, &next) in offsets {
        list.add_partition_offset(topic, partition, Offset::Offset(next))
            .expect("a non-negative offset is valid");
    }
    let kafka = kafka.clone();
    let committing = tokio::task::spawn_blocking(move || kafka.commit(&list, CommitMode::Sync));
    match tokio::time::timeout(COMMIT_TIMEOUT, committing).await {
        Ok(Ok(Ok(()))) => {
            metrics.commits.inc();
        }
        Ok(Ok(Err(e))) => {
            tracing::warn!(error = %e, ?offsets, "commit failed; these records will be read again")
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, ?offsets, "commit task failed; these records will be read again")
        }
        Err(_) => tracing::warn!(
            timeout = ?COMMIT_TIMEOUT,
            ?offsets,
            "commit not answered; these records will be read again"
        ),
    }
}
