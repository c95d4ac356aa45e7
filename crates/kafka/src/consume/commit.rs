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
//! At-least-once still holds, because an offset is owed only once every
//! record before it is stored, and committing a stored offset is always
//! safe. What must not happen is a commit of ours for a partition that
//! another member now owns: it would move that member's committed offset
//! back, and an idle member would then look behind for good. So:
//! - offsets are owed only for partitions assigned to this member at the
//!   time (a batch stored after its partition was revoked owes nothing for
//!   it: whoever owns it reads those records again, harmlessly);
//! - on revocation (librdkafka's rebalance callback, before the partitions
//!   go to another member) the commit in flight is awaited and everything
//!   owed is committed there, while the partitions are still ours;
//! - a failed or unanswered commit owes its offsets again, for the
//!   partitions still assigned, and is retried after [`RETRY_AFTER`].
//!
//! A crash loses at most the offsets owed since the last commit: those
//! records are read again, which the idempotent writes make harmless.

use std::collections::{BTreeMap, BTreeSet};
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

/// After a failed commit, how long before the offsets it owed are tried
/// again (with whatever was owed meanwhile).
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Per partition, the offset after its last stored record.
type Offsets = BTreeMap<i32, i64>;

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
    offsets: Offsets,
    /// The partitions this member holds now, as the rebalance callback
    /// reports them.
    assigned: BTreeSet<i32>,
}

impl OwedState {
    /// Owes `offsets` for the partitions assigned now; an owed offset only
    /// grows.
    fn merge(&mut self, offsets: &Offsets) {
        for (&partition, &next) in offsets {
            if self.assigned.contains(&partition) {
                let owed = self.offsets.entry(partition).or_insert(next);
                *owed = (*owed).max(next);
            }
        }
    }
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

    /// Owes the commit of `next_offsets`, a stored batch's.
    pub fn owe(&self, next_offsets: &Offsets) {
        self.state.lock().expect("not poisoned").merge(next_offsets);
        self.added.notify_one();
    }

    /// From the rebalance callback, once `partitions` are ours.
    pub fn assign(&self, partitions: &[i32]) {
        let mut state = self.state.lock().expect("not poisoned");
        state.assigned.extend(partitions);
    }

    /// From the rebalance callback, before `partitions` go to another
    /// member: waits for the commit in flight and commits what is owed,
    /// while the partitions are still ours.
    pub fn revoke<C: ConsumerContext>(&self, kafka: &BaseConsumer<C>, partitions: &[i32]) {
        let _one_at_a_time = self.committing.lock().expect("not poisoned");
        // Only now, so that a commit in flight that failed has owed its
        // offsets again for these partitions, and they go out here.
        let mut state = self.state.lock().expect("not poisoned");
        for partition in partitions {
            state.assigned.remove(partition);
        }
        drop(state);
        if let Some((offsets, Err(e))) = self.take_and_commit(kafka) {
            tracing::warn!(error = %e, ?offsets, "commit on revocation failed; the revoked partitions' records will be read again");
        }
    }

    /// Takes what is owed and commits it; `None` when nothing is.
    fn commit_owed<C: ConsumerContext, K: Consumer<C>>(
        &self,
        kafka: &K,
    ) -> Option<(Offsets, KafkaResult<()>)> {
        let _one_at_a_time = self.committing.lock().expect("not poisoned");
        self.take_and_commit(kafka)
    }

    /// Under `committing`: takes what is owed and commits it; on failure
    /// it is owed again, for the partitions still assigned.
    fn take_and_commit<C: ConsumerContext, K: Consumer<C>>(
        &self,
        kafka: &K,
    ) -> Option<(Offsets, KafkaResult<()>)> {
        let owed = std::mem::take(&mut self.state.lock().expect("not poisoned").offsets);
        let result = self.commit(kafka, &owed)?;
        if result.is_err() {
            self.state.lock().expect("not poisoned").merge(&owed);
        }
        Some((owed, result))
    }

    fn commit<C: ConsumerContext, K: Consumer<C>>(
        &self,
        kafka: &K,
        offsets: &Offsets,
    ) -> Option<KafkaResult<()>> {
        if offsets.is_empty() {
            return None;
        }
        let mut list = TopicPartitionList::new();
        for (&partition, &next) in offsets {
            list.add_partition_offset(&self.topic, partition, Offset::Offset(next))
                .expect("a non-negative offset is valid");
        }
        let result = kafka.commit(&list, CommitMode::Sync);
        if result.is_ok() {
            self.commits.inc();
        }
        Some(result)
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
        let task = tokio::spawn(commit_loop(kafka, owed.clone(), stop.clone()).in_current_span());
        Self { owed, stop, task }
    }

    pub fn owe(&self, next_offsets: &Offsets) {
        self.owed.owe(next_offsets);
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

async fn commit_loop(
    kafka: Arc<StreamConsumer<StatsContext>>,
    owed: Arc<Owed>,
    stop: CancellationToken,
) {
    let mut failed = false;
    loop {
        let stopping = if failed {
            tokio::select! {
                () = tokio::time::sleep(RETRY_AFTER) => false,
                () = stop.cancelled() => true,
            }
        } else {
            tokio::select! {
                () = owed.added.notified() => false,
                () = stop.cancelled() => true,
            }
        };
        let committing = {
            let kafka = kafka.clone();
            let owed = owed.clone();
            tokio::task::spawn_blocking(move || owed.commit_owed(kafka.as_ref()))
        };
        failed = match tokio::time::timeout(COMMIT_TIMEOUT, committing).await {
            Ok(Ok(None | Some((_, Ok(()))))) => false,
            Ok(Ok(Some((offsets, Err(e))))) => {
                tracing::warn!(error = %e, ?offsets, "commit failed; retrying");
                true
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "commit task failed; these records will be read again");
                false
            }
            // The commit goes on in its thread and, should it fail, owes
            // its offsets again; the retry waits for it to end.
            Err(_) => {
                tracing::warn!(timeout = ?COMMIT_TIMEOUT, "commit not answered; retrying");
                true
            }
        };
        if stopping {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offsets(pairs: &[(i32, i64)]) -> Offsets {
        pairs.iter().copied().collect()
    }

    #[test]
    fn only_assigned_partitions_are_owed_and_an_owed_offset_only_grows() {
        let mut state = OwedState::default();
        state.merge(&offsets(&[(0, 10)]));
        assert!(state.offsets.is_empty(), "nothing is assigned yet");
        state.assigned.extend([0, 1]);
        state.merge(&offsets(&[(0, 10), (1, 5), (2, 7)]));
        assert_eq!(state.offsets, offsets(&[(0, 10), (1, 5)]));
        state.merge(&offsets(&[(0, 4), (1, 9)]));
        assert_eq!(state.offsets, offsets(&[(0, 10), (1, 9)]));
    }

    #[test]
    fn a_batch_stored_after_its_partition_was_revoked_owes_nothing_for_it() {
        let owed = Owed::new("events".into(), Counter::default());
        owed.assign(&[0, 1]);
        // Nothing is owed yet, so the revocation commits nothing and needs
        // no broker.
        let kafka: BaseConsumer = rdkafka::ClientConfig::new()
            .set("group.id", "tests")
            .create()
            .unwrap();
        owed.revoke(&kafka, &[1]);
        owed.owe(&offsets(&[(0, 3), (1, 8)]));
        assert_eq!(owed.state.lock().unwrap().offsets, offsets(&[(0, 3)]));
        // Assigned back (the eager protocol revokes everything at each
        // rebalance): a batch stored now owes for it again.
        owed.assign(&[1]);
        owed.owe(&offsets(&[(1, 8)]));
        assert_eq!(
            owed.state.lock().unwrap().offsets,
            offsets(&[(0, 3), (1, 8)])
        );
    }
}
