//! The InfluxDB sink: one line-protocol request per batch, idempotent because
//! each event's point identity comes from its id (see `line`), then the
//! batch's seconds marked for their totals to be refreshed (see `rollup`).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use streamproc_event::{EventTime, LoggedEvent};
use streamproc_kafka::consume::visible::Visible;
use streamproc_kafka::consume::{Sink, SinkError};
use streamproc_store::influx::{Influx, InfluxArgs, InfluxError};

use crate::rollup::Rollups;
use streamproc_store::line;

pub struct InfluxSink {
    influx: Influx,
    database_ready: AtomicBool,
    rollups: Arc<Rollups>,
}

impl InfluxSink {
    /// A sink whose totals refreshes tell no one (a rebuild, a test).
    pub fn new(args: InfluxArgs) -> anyhow::Result<Self> {
        Self::telling(args, Visible::default())
    }

    /// A sink whose totals refreshes tell `visible`'s listeners: its
    /// events are counted by readers only once their seconds' totals are.
    pub fn telling(args: InfluxArgs, visible: Visible) -> anyhow::Result<Self> {
        let influx = Influx::new(args)?;
        tracing::info!(database = %influx.describe(), "writing to influxdb");
        Ok(Self {
            rollups: Arc::new(Rollups::new(influx.clone(), visible)),
            influx,
            database_ready: AtomicBool::new(false),
        })
    }

    /// The per-second totals of what this sink writes; someone must run
    /// [`Rollups::maintain`] (consumer-low's `run` does).
    pub fn rollups(&self) -> Arc<Rollups> {
        self.rollups.clone()
    }

    async fn ensure_database(&self) -> Result<(), SinkError> {
        if !self.database_ready.load(Ordering::Relaxed) {
            self.influx.create_database().await.map_err(to_sink_error)?;
            self.database_ready.store(true, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// Only a refusal of the data itself is final; missing databases, refused
/// credentials and outages are retried until someone fixes them, since
/// dead-lettering every event for a configuration mistake would be worse.
fn to_sink_error(error: InfluxError) -> SinkError {
    match error {
        InfluxError::Rejected { .. } => SinkError::Rejected(error.into()),
        _ => SinkError::Unavailable(error.into()),
    }
}

impl Sink for InfluxSink {
    // Readers count events from the per-second totals, which the rollups
    // refresh after the write; they tell the listeners.
    const VISIBLE_WHEN_WRITTEN: bool = false;

    async fn write(&self, events: &[LoggedEvent]) -> Result<(), SinkError> {
        self.ensure_database().await?;
        let seconds: BTreeSet<i64> = events
            .iter()
            .map(|e| e.event.time.as_millis().div_euclid(1000))
            .collect();
        let body = line::encode(events, EventTime::now().as_millis());
        let written = match self.influx.write(body).await {
            Ok(()) => self.rollups.mark(&seconds).await,
            Err(error) => Err(error),
        };
        match written {
            Ok(()) => Ok(()),
            Err(error @ InfluxError::NoDatabase(_)) => {
                // Dropped behind our back: create it again on the next try.
                self.database_ready.store(false, Ordering::Relaxed);
                Err(SinkError::Unavailable(error.into()))
            }
            Err(error) => Err(to_sink_error(error)),
        }
    }

    async fn check(&self) -> Result<(), SinkError> {
        self.influx.ping().await.map_err(to_sink_error)?;
        self.ensure_database().await
    }
}
