//! Committing stored batches' offsets in the background, coalesced: the
//! loop hands over each stored batch's offsets and goes on; one task
//! commits whatever is owed, one commit at a time, and the offsets owed
//! while a commit is in flight go out together in the next.
//!
//! Why: a commit is a round trip to the group's coordinator, and on tansu
//! with SQLite storage a slow one (about a second under a full drain,
//! measured 2026-12-05) that also holds the broker's fetches back. One
//! commit per batch, awaited in line, held consumer-high's drain to about
//! half the broker's read rate.
//!
//! At-least-once still holds: offsets are owed only once their batch is
//! stored, a partition's owed offset only grows, and one commit is in
//! flight at a time. On revocation (librdkafka's rebalance callback, before
//! the partitions go to another member) the commit in flight is awaited and
//! everything owed is committed there, so no commit of ours can land after
//! the new owner's; a batch read before a revocation owes nothing for the
//! partitions revoked since (another member reads them from the committed
//! offset). A crash loses at most the offsets owed since the last commit:
//! those records are read again, which the idempotent writes make harmless.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::context::StatsContext;

/// librdkafka's synchronous commit waits for the coordinator without a
/// limit of its own: a broker that accepts connections but never answers
/// would hold the commits (and shutdown) forever. Past this the task goes
/// on; the blocked thread ends when librdkafka gives up.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);

/// What is owed, shared by the loop, the committing task and the
/// rebalance callback.
pub(super) struct Owed {
    topic: String,
    state: Mutex<OwedState>,
    added: Notify,
    /// Held while a commit is in flight, so the rebalance callback can
    /// wait for it.
    committing: Mutex<()>,
    commits: Counter,
}

#[derive(Default)]
struct OwedState {
    /// Per partition, the offset after its last stored record.
    offsets: BTreeMap<i32, i64>,
    /// Revocations so far.
    epoch: u64,
    /// Per partition, the epoch of its last revocation.
    revoked_at: BTreeMap<i32, u64>,
}

impl Owed {
    pub fn new(topic: String, commits: Counter) -> Self {
        Self {
            topic,
            state: Mutex::new(OwedState::default()),
            added: Notify::new(),
            committing: Mutex::new(()),
            commits,
        }
    }

    /// Revocations so far: read when a batch starts, and given back to
    /// [`Owed::owe`] with its offsets.
    pub fn epoch(&self) -> u64 {
        self.state.lock().expect("not poisoned").epoch
    }

    /// Owes the commit of `next_offsets`, a stored batch's that began at
    /// `epoch`, except for the partitions revoked since.
    pub fn owe(&self, epoch: u64, next_offsets: &BTreeMap<i32, i64>) {
        let mut state = self.state.lock().expect("not poisoned");
        for (&partition, &next) in next_offsets {
            if state
                .revoked_at
                .get(&partition)
                .is_some_and(|&at| at > epoch)
            {
                continue;
            }
            let owed = state.offsets.entry(partition).or_insert(next);
            *owed = (*owed).max(next);
        }
        drop(state);
        self.added.notify_one();
    }

    fn take(&self) -> BTreeMap<i32, i64> {
        std::mem::take(&mut self.state.lock().expect("not poisoned").offsets)
    }

    fn list(&self, offsets: &BTreeMap<i32, i64>) -> TopicPartitionList {
        let mut list = TopicPartitionList::new();
        for (&partition, &next) in offsets {
            list.add_partition_offset(&self.topic, partition, Offset::Offset(next))
                .expect("a non-negative offset is valid");
        }
        list
    }

    /// Takes what is owed and commits it, unless nothing is: `None`.
    fn commit_with<C: ConsumerContext, K: Consumer<C>>(
        &self,
        kafka: &K,
    ) -> Option<(BTreeMap<i32, i64>, KafkaResult<()>)> {
        let _one_at_a_time = self.committing.lock().expect("not poisoned");
        let offsets = self.take();
        if offsets.is_empty() {
            return None;
        }
        let result = kafka.commit(&self.list(&offsets), CommitMode::Sync);
        if result.is_ok() {
            self.commits.inc();
        }
        Some((offsets, result))
    }

    /// From the rebalance callback, before `partitions` go to another
    /// member: waits for the commit in flight and commits what is owed.
    pub fn revoke<C: ConsumerContext>(&self, kafka: &BaseConsumer<C>, partitions: &[i32]) {
        {
            let mut state = self.state.lock().expect("not poisoned");
            state.epoch += 1;
            let epoch = state.epoch;
            for &partition in partitions {
                state.revoked_at.insert(partition, epoch);
            }
        }
        if let Some((offsets, Err(e))) = self.commit_with(kafka) {
            tracing::warn!(error = %e, ?offsets, "commit on revocation failed; these records will be read again");
        }
    }
}

/// The loop's side of the committing task.
pub(super) struct Commits {
    owed: Arc<Owed>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Commits {
    /// Starts the committing task, in the caller's span.
    pub fn start(kafka: Arc<StreamConsumer<StatsContext>>, owed: Arc<Owed>) -> Self {
        let stop = CancellationToken::new();
        let task = tokio::spawn(commit_owed(kafka, owed.clone(), stop.clone()).in_current_span());
        Self { owed, stop, task }
    }

    pub fn epoch(&self) -> u64 {
        self.owed.epoch()
    }

    pub fn owe(&self, epoch: u64, next_offsets: &BTreeMap<i32, i64>) {
        self.owed.owe(epoch, next_offsets);
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
    owed: Arc<Owed>,
    stop: CancellationToken,
) {
    loop {
        let stopping = tokio::select! {
            () = owed.added.notified() => false,
            () = stop.cancelled() => true,
        };
        let committing = {
            let kafka = kafka.clone();
            let owed = owed.clone();
            tokio::task::spawn_blocking(move || owed.commit_with(kafka.as_ref()))
        };
        // A failed commit is logged, not retried: its records are read
        // again later (it happens when a rebalance moved the partition).
        match tokio::time::timeout(COMMIT_TIMEOUT, committing).await {
            Ok(Ok(None | Some((_, Ok(()))))) => {}
            Ok(Ok(Some((offsets, Err(e))))) => {
                tracing::warn!(error = %e, ?offsets, "commit failed; these records will be read again")
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "commit task failed; these records will be read again")
            }
            Err(_) => tracing::warn!(
                timeout = ?COMMIT_TIMEOUT,
                "commit not answered; these records will be read again"
            ),
        }
        if stopping {
            return;
        }
    }
}
