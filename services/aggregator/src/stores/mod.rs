//! Reading both stores at once: each query runs concurrently against
//! TimescaleDB (the high series) and InfluxDB (the low series), under its own
//! time limit, and each store's failure stays its own.

mod influx;
mod metrics;
mod timescale;

use std::future::Future;
use std::time::{Duration, Instant};

use serde::Serialize;
use streamproc_event::{EventId, EventTime, Route};
use streamproc_kit::error::Chain;
use streamproc_kit::ops::NotReady;
use streamproc_store::influx::InfluxError;

pub use influx::{InfluxReader, StoredCounts};
pub use metrics::QueryMetrics;
pub use timescale::TimescaleReader;

use crate::series::Stats;
use streamproc_grid::Grid;

/// Which store holds a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Store {
    /// Events with amount above the watermark (the high series).
    TimescaleDb,
    /// The other events (the low series).
    InfluxDb,
}

impl Store {
    /// The store that holds `route`'s events.
    pub fn of(route: Route) -> Self {
        match route {
            Route::High => Self::TimescaleDb,
            Route::Low => Self::InfluxDb,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::TimescaleDb => "timescaledb",
            Self::InfluxDb => "influxdb",
        }
    }
}

/// Why a store gave no answer. Messages stay those of the store itself,
/// which the answers quote per store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// TimescaleDB has no tables yet.
    #[error("{} (consumer-high creates the tables when it starts)", missing_table(.0))]
    NoTables(#[source] sqlx::Error),
    #[error(transparent)]
    Timescale(sqlx::Error),
    #[error(transparent)]
    Influx(#[from] InfluxError),
    /// An answer in a shape the reader does not know.
    #[error("unexpected {store} answer: {detail}")]
    Unexpected { store: &'static str, detail: String },
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::Database(db) if db.code().as_deref() == Some("42P01") => {
                Self::NoTables(error)
            }
            _ => Self::Timescale(error),
        }
    }
}

fn missing_table(error: &sqlx::Error) -> &str {
    error.as_database_error().map_or("", |db| db.message())
}

/// Everything a store holds, for reconciling with the events accepted.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = StoreTotals)]
pub struct Totals {
    pub count: u64,
    pub sum: f64,
    /// Time of the newest stored event (Unix ms; InfluxDB tells only the
    /// start of its second), if any.
    pub last_time: Option<i64>,
}

/// One event as a store holds it, and the Kafka record it came from.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct StoredEvent {
    pub store: Store,
    /// The event's time, Unix ms.
    pub time: i64,
    pub amount: f64,
    /// The events-topic partition it was read from; absent for events
    /// stored by a release before this was kept.
    pub partition: Option<i32>,
    /// Its offset in that partition; absent as `partition`.
    pub offset: Option<i64>,
    /// When the consumer wrote it, Unix ms; absent as `partition`.
    pub stored_at: Option<i64>,
}

/// Where one event was looked for: each store's answer, or why it was not
/// asked.
pub struct Found {
    pub high: Result<Option<StoredEvent>, StoreError>,
    /// `None` when no time was given: InfluxDB finds a point by its time.
    pub low: Option<Result<Option<StoredEvent>, StoreError>>,
}

/// What [`Stores::reconcile_counts`] read.
pub struct ReconcileCounts {
    /// Accepted events per bucket: (start, high route, low route).
    pub ledger: Result<Vec<(i64, u64, u64)>, StoreError>,
    /// TimescaleDB's rows per bucket.
    pub high: Result<Vec<(i64, u64)>, StoreError>,
    pub low: Result<StoredCounts, StoreError>,
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
    metrics: QueryMetrics,
}

impl Stores {
    pub fn new(
        timescale: TimescaleReader,
        influx: InfluxReader,
        timeout: Duration,
        metrics: QueryMetrics,
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

    /// The event `id` in either store; InfluxDB is asked only when `time`
    /// is known.
    pub async fn find(&self, id: &EventId, time: Option<EventTime>) -> Found {
        let low = async {
            match time {
                Some(time) => Some(
                    self.timed(Store::InfluxDb, self.influx.find(id, time))
                        .await,
                ),
                None => None,
            }
        };
        let (high, low) = tokio::join!(
            self.timed(Store::TimescaleDb, self.timescale.find(id, time)),
            low,
        );
        Found { high, low }
    }

    /// The event `id` at `time` in `store` alone.
    pub async fn find_in(
        &self,
        store: Store,
        id: &EventId,
        time: EventTime,
    ) -> Result<Option<StoredEvent>, StoreError> {
        match store {
            Store::TimescaleDb => self.timed(store, self.timescale.find(id, Some(time))).await,
            Store::InfluxDb => self.timed(store, self.influx.find(id, time)).await,
        }
    }

    /// What the reconciliation compares, each part read concurrently: the
    /// ledger of accepted events, TimescaleDB's rows and InfluxDB's counts
    /// per bucket of `grid`.
    pub async fn reconcile_counts(&self, grid: &Grid) -> ReconcileCounts {
        let (ledger, high, low) = tokio::join!(
            self.timed(Store::TimescaleDb, self.timescale.ledger(grid)),
            self.timed(Store::TimescaleDb, self.timescale.stored_rows(grid)),
            self.timed(Store::InfluxDb, self.influx.stored_counts(grid)),
        );
        ReconcileCounts { ledger, high, low }
    }

    /// `Ok` when both stores answer; otherwise says which do not.
    pub async fn check(&self) -> Result<(), NotReady> {
        let (high, low) = tokio::join!(
            self.timed(Store::TimescaleDb, self.timescale.ping()),
            self.timed(Store::InfluxDb, self.influx.ping()),
        );
        match (high, low) {
            (Ok(()), Ok(())) => Ok(()),
            (Err(high), Err(low)) => Err(NotReady::new(
                "timescaledb",
                format!("{}; influxdb: {}", Chain(&high), Chain(&low)),
            )),
            (Err(high), Ok(())) => Err(NotReady::new(Store::TimescaleDb.name(), high)),
            (Ok(()), Err(low)) => Err(NotReady::new(Store::InfluxDb.name(), low)),
        }
    }

    async fn timed<T>(
        &self,
        store: Store,
        query: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let result = tokio::time::timeout(self.timeout, query)
            .await
            .unwrap_or(Err(StoreError::Timeout(self.timeout)));
        self.metrics
            .observe(store, started.elapsed(), result.is_ok());
        if let Err(error) = &result {
            // Counted by the same metric, labelled with the store.
            tracing::warn!(store = store.name(), error = %Chain(error), "store query failed");
        }
        result
    }
}
