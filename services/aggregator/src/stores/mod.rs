//! Reading both stores at once: each query runs concurrently against
//! TimescaleDB (the high series) and InfluxDB (the low series), under its own
//! time limit, and each store's failure stays its own.

mod influx;
mod timescale;

use std::future::Future;
use std::time::{Duration, Instant};

use serde::Serialize;

pub use influx::InfluxReader;
pub use timescale::TimescaleReader;

use crate::metrics::StoreMetrics;
use crate::series::Stats;
use streamproc_grid::Grid;

/// Which store holds a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Store {
    /// Events with amount above the watermark (the high series).
    TimescaleDb,
    /// The other events (the low series).
    InfluxDb,
}

impl Store {
    pub fn name(self) -> &'static str {
        match self {
            Self::TimescaleDb => "timescaledb",
            Self::InfluxDb => "influxdb",
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Failed(String),
}

/// Everything a store holds, for reconciling with the events accepted.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Totals {
    pub count: u64,
    pub sum: f64,
    /// Time of the newest stored event (Unix ms; InfluxDB tells only the
    /// start of its second), if any.
    pub last_time: Option<i64>,
}

/// The answer of both stores to one question.
pub struct Both<T> {
    pub high: Result<T, StoreError>,
    pub low: Result<T, StoreError>,
}

/// Non-empty buckets by start time, as a store answers them.
pub type Buckets = Vec<(i64, Stats)>;

pub struct Stores {
    timescale: TimescaleReader,
    influx: InfluxReader,
    timeout: Duration,
    metrics: StoreMetrics,
}

impl Stores {
    pub fn new(
        timescale: TimescaleReader,
        influx: InfluxReader,
        timeout: Duration,
        metrics: StoreMetrics,
    ) -> Self {
        Self {
            timescale,
            influx,
            timeout,
            metrics,
        }
    }

    pub async fn buckets(&self, grid: &Grid) -> Both<Buckets> {
        let (high, low) = tokio::join!(
            self.timed(Store::TimescaleDb, self.timescale.buckets(grid)),
            self.timed(Store::InfluxDb, self.influx.buckets(grid)),
        );
        Both { high, low }
    }

    pub async fn totals(&self) -> Both<Totals> {
        let (high, low) = tokio::join!(
            self.timed(Store::TimescaleDb, self.timescale.totals()),
            self.timed(Store::InfluxDb, self.influx.totals()),
        );
        Both { high, low }
    }

    /// `Ok` when both stores answer; otherwise says which do not.
    pub async fn check(&self) -> Result<(), String> {
        let (high, low) = tokio::join!(
            self.timed(Store::TimescaleDb, self.timescale.ping()),
            self.timed(Store::InfluxDb, self.influx.ping()),
        );
        let failures: Vec<String> = [(Store::TimescaleDb, high), (Store::InfluxDb, low)]
            .into_iter()
            .filter_map(|(store, result)| Some(format!("{}: {}", store.name(), result.err()?)))
            .collect();
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures.join("; "))
        }
    }

    async fn timed<T>(
        &self,
        store: Store,
        query: impl Future<Output = Result<T, String>>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let result = match tokio::time::timeout(self.timeout, query).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(message)) => Err(StoreError::Failed(message)),
            Err(_) => Err(StoreError::Timeout(self.timeout)),
        };
        self.metrics
            .observe(store, started.elapsed(), result.is_ok());
        if let Err(error) = &result {
            tracing::warn!("{} query failed: {error}", store.name());
        }
        result
    }
}
