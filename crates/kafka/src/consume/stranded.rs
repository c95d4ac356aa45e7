//! A member left without partitions while the group's records wait and
//! nobody commits them: it rejoins the group.
//!
//! Seen with the local broker, tansu 0.6.0: a consumer restarted after a
//! `kill -9` joins while the dead member is still in the group, and when the
//! dead member's session expires the new one is assigned nothing, for
//! good; records wait until someone restarts it. Apache Kafka evicts the
//! dead member and rebalances by itself. The remedy is what a restart does:
//! leave the group and join again. It only acts when nobody consumes (no
//! partition here, records waiting, committed offsets not moving for
//! `STRANDED_AFTER`), so a member that is idle because a group has more
//! members than partitions stays quiet while the others make progress.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer as _, ConsumerContext, StreamConsumer};
use tokio_util::sync::CancellationToken;

use prometheus_client::metrics::counter::Counter;

use crate::offsets::{self, OffsetsError};

const CHECK_EVERY: Duration = Duration::from_secs(5);
const STRANDED_AFTER: Duration = Duration::from_secs(20);
const KAFKA_TIMEOUT: Duration = Duration::from_secs(5);

/// What the group holds of `topic`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Progress {
    /// Records after the group's committed offsets.
    waiting: i64,
    /// Sum of the committed offsets: it moves when anyone stores records.
    committed: i64,
}

pub async fn rejoin_when_stranded<C: ConsumerContext + 'static>(
    kafka: Arc<StreamConsumer<C>>,
    topic: String,
    rejoins: Counter,
    stop: CancellationToken,
) {
    // Since when nothing moved, and at which committed offsets.
    let mut still: Option<(Instant, i64)> = None;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(CHECK_EVERY) => {}
        }
        // The assignment is local; only a member without one asks the
        // broker how the group is doing.
        if kafka
            .assignment()
            .is_ok_and(|partitions| partitions.count() > 0)
        {
            still = None;
            continue;
        }
        let (consumer, name) = (kafka.clone(), topic.clone());
        let progress = tokio::task::spawn_blocking(move || progress(&consumer, &name)).await;
        let Ok(Ok(progress)) = progress else {
            // The broker does not answer: nothing to decide now.
            continue;
        };
        if progress.waiting == 0 {
            still = None;
            continue;
        }
        match still {
            Some((since, committed)) if committed == progress.committed => {
                if since.elapsed() >= STRANDED_AFTER {
                    // The one log line of a stranded member's recovery;
                    // consumer_rejoins counts them.
                    tracing::warn!(
                        stranded_for = ?since.elapsed(),
                        records = progress.waiting,
                        "assigned no partition while records wait and nobody commits; \
                         leaving and joining the group again"
                    );
                    rejoins.inc();
                    kafka.unsubscribe();
                    if let Err(error) = kafka.subscribe(&[&topic]) {
                        tracing::error!(topic = %topic, error = %error, "subscribing again failed");
                    }
                    still = None;
                }
            }
            _ => still = Some((Instant::now(), progress.committed)),
        }
    }
}

fn progress<C: ConsumerContext>(
    kafka: &StreamConsumer<C>,
    topic: &str,
) -> Result<Progress, OffsetsError> {
    let ends = offsets::topic_ends(kafka, topic, KAFKA_TIMEOUT)?;
    let positions = offsets::group_positions(kafka, topic, &ends, KAFKA_TIMEOUT)?;
    Ok(Progress {
        waiting: positions.iter().map(|p| p.lag).sum(),
        committed: positions.iter().map(|p| p.position).sum(),
    })
}
