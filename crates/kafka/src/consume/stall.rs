//! Whether the consume loop is moving. A batch that cannot be stored keeps
//! its partition from moving: while the store answers pings but refuses
//! every write for a reason that looks like an outage, the probes alone
//! would stay green. The loop reports each failed try here; past
//! `stall_after`, `/readyz` fails with the reason and a metric says so.

use std::sync::{Arc, Mutex};
use std::time::Duration;

// tokio's clock (the system's, outside tests), so that tests can advance it.
use tokio::time::Instant;

use super::ConsumerMetrics;

/// The loop has stored nothing for longer than `stall_after`.
#[derive(Debug, thiserror::Error)]
#[error(
    "stalled: {records} records waiting, nothing stored for {for_:.0?}; last error: {last_error}"
)]
pub struct Stalled {
    pub records: usize,
    pub for_: Duration,
    /// The last failure, with its causes (a chain, already written out).
    pub last_error: String,
}

#[derive(Clone)]
pub struct Stall {
    after: Duration,
    stuck: Arc<Mutex<Option<Stuck>>>,
}

struct Stuck {
    since: Instant,
    records: usize,
    reason: String,
}

impl Stall {
    pub fn new(after: Duration) -> Self {
        Self {
            after,
            stuck: Arc::default(),
        }
    }

    /// A try at storing `records` records failed; the first failure since
    /// the last progress starts the clock.
    pub fn failing(&self, records: usize, reason: &str, metrics: &ConsumerMetrics) {
        let mut stuck = self.stuck.lock().expect("not poisoned");
        let since = stuck.as_ref().map_or_else(Instant::now, |s| s.since);
        let waited = since.elapsed();
        metrics.stalled_seconds.set(waited.as_secs() as i64);
        *stuck = Some(Stuck {
            since,
            records,
            reason: reason.to_owned(),
        });
    }

    /// A batch was stored.
    pub fn progressed(&self, metrics: &ConsumerMetrics) {
        *self.stuck.lock().expect("not poisoned") = None;
        metrics.stalled_seconds.set(0);
    }

    /// `Err` with the reason once the loop has not stored anything for
    /// longer than `stall_after` while records wait.
    pub fn check(&self) -> Result<(), Stalled> {
        let stuck = self.stuck.lock().expect("not poisoned");
        match stuck.as_ref() {
            Some(s) if s.since.elapsed() >= self.after => Err(Stalled {
                records: s.records,
                for_: s.since.elapsed(),
                last_error: s.reason.clone(),
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    #[tokio::test(start_paused = true)]
    async fn reports_only_after_the_limit_and_clears_on_progress() {
        let metrics = ConsumerMetrics::register(&mut Registry::default());
        let stall = Stall::new(Duration::from_millis(50));
        assert!(stall.check().is_ok());
        stall.failing(3, "disk full", &metrics);
        assert!(stall.check().is_ok(), "not yet");
        tokio::time::advance(Duration::from_millis(49)).await;
        assert!(stall.check().is_ok(), "not yet, 1 ms before the limit");
        tokio::time::advance(Duration::from_millis(11)).await;
        stall.failing(3, "disk still full", &metrics);
        let reason = stall.check().unwrap_err().to_string();
        assert!(
            reason.contains("3 records") && reason.contains("disk still full"),
            "{reason}"
        );
        stall.progressed(&metrics);
        assert!(stall.check().is_ok());
        assert_eq!(metrics.stalled_seconds.get(), 0);
    }
}
