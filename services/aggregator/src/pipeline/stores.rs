//! The stores' side of one probe: each store's newest per-second totals,
//! read the way the charts read them, timed. That one query tells whether
//! the store answers, how fast, and how many events per second it stored
//! (by event time) over the rate window.
//!
//! The readers are the pipeline's own, not the ones that answer users, so a
//! probe never waits behind user queries and its failures are not logged
//! once a second.

use std::future::Future;
use std::time::{Duration, Instant};

use super::failure::Failure;
use crate::stores::{Buckets, InfluxReader, StoreError, TimescaleReader};
use streamproc_grid::Grid;

/// One store's answer to a probe.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreSample {
    /// Time to answer, or why it did not.
    pub latency: Result<Duration, Failure>,
    /// Events stored per second over the last full seconds of the rate
    /// window, when it answered.
    pub stored_per_second: Option<f64>,
}

pub struct StoreProbe {
    timescale: TimescaleReader,
    influx: InfluxReader,
    timeout: Duration,
    /// Whole seconds over which the stored rate is averaged.
    window_seconds: i64,
}

impl StoreProbe {
    pub fn new(
        timescale: TimescaleReader,
        influx: InfluxReader,
        timeout: Duration,
        window: Duration,
    ) -> Self {
        Self {
            timescale,
            influx,
            timeout,
            window_seconds: i64::try_from(window.as_secs()).unwrap_or(60).clamp(1, 3600),
        }
    }

    /// TimescaleDB's and InfluxDB's answers, asked at once.
    pub async fn sample(&self, now_ms: i64) -> (StoreSample, StoreSample) {
        // The bucket in progress is left out: it is still filling.
        let Ok(grid) = Grid::latest(now_ms, 1000, self.window_seconds + 1) else {
            let failed = StoreSample {
                latency: Err("the clock is outside the supported range".into()),
                stored_per_second: None,
            };
            return (failed.clone(), failed);
        };
        tokio::join!(
            self.timed(&grid, self.timescale.buckets(&grid)),
            self.timed(&grid, self.influx.buckets(&grid)),
        )
    }

    async fn timed(
        &self,
        grid: &Grid,
        query: impl Future<Output = Result<Buckets, StoreError>>,
    ) -> StoreSample {
        let started = Instant::now();
        let answer = tokio::time::timeout(self.timeout, query).await;
        let took = started.elapsed();
        match answer {
            Ok(Ok(buckets)) => {
                let current = grid.end_ms() - grid.step_ms();
                let stored: u64 = buckets
                    .iter()
                    .filter(|(start, _)| *start < current)
                    .map(|(_, stats)| stats.count)
                    .sum();
                StoreSample {
                    latency: Ok(took),
                    stored_per_second: Some(stored as f64 / self.window_seconds as f64),
                }
            }
            Ok(Err(error)) => StoreSample {
                latency: Err(Failure::from_error(&error)),
                stored_per_second: None,
            },
            Err(_) => StoreSample {
                latency: Err(Failure::from(format!(
                    "no answer within {}",
                    humantime::format_duration(self.timeout)
                ))),
                stored_per_second: None,
            },
        }
    }
}
