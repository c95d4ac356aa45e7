//! The low series from InfluxDB, by InfluxQL `GROUP BY time()`, whose
//! buckets are aligned to the epoch like the TimescaleDB ones. Only numbers
//! from a validated [`Grid`] enter a query.

use streamproc::influx::{Influx, InfluxArgs, MEASUREMENT};

use super::{Buckets, Totals};
use crate::grid::Grid;
use crate::series::Stats;

pub struct InfluxReader {
    influx: Influx,
}

impl InfluxReader {
    pub fn new(args: InfluxArgs) -> anyhow::Result<Self> {
        Ok(Self {
            influx: Influx::new(args)?,
        })
    }

    pub async fn buckets(&self, grid: &Grid) -> Result<Buckets, String> {
        let query = format!(
            "SELECT count(amount), sum(amount), min(amount), max(amount) FROM {MEASUREMENT} \
             WHERE time >= {}ms AND time < {}ms GROUP BY time({}ms) fill(none)",
            grid.start_ms(),
            grid.end_ms(),
            grid.step_ms()
        );
        let answer = self.influx.query(&query).await.map_err(|e| e.to_string())?;
        rows(&answer)
            .map(|row| {
                let number = |i: usize| row.get(i).and_then(serde_json::Value::as_f64);
                match (row.first().and_then(serde_json::Value::as_i64), number(1)) {
                    (Some(start), Some(count)) => Ok((
                        start,
                        Stats {
                            count: count as u64,
                            sum: number(2).unwrap_or(0.0),
                            min: number(3).unwrap_or(f64::NAN),
                            max: number(4).unwrap_or(f64::NAN),
                        },
                    )),
                    _ => Err(format!("unexpected InfluxDB row {row:?}")),
                }
            })
            .collect()
    }

    pub async fn totals(&self) -> Result<Totals, String> {
        let query =
            |q: String| async move { self.influx.query(&q).await.map_err(|e| e.to_string()) };
        let (totals, last) = tokio::try_join!(
            query(format!(
                "SELECT count(amount), sum(amount) FROM {MEASUREMENT}"
            )),
            query(format!("SELECT last(amount) FROM {MEASUREMENT}")),
        )?;
        let row = rows(&totals).next();
        let number = |i: usize| {
            row.and_then(|r| r.get(i))
                .and_then(serde_json::Value::as_f64)
        };
        let last_time = rows(&last)
            .next()
            .and_then(|r| r.first())
            .and_then(serde_json::Value::as_i64);
        Ok(Totals {
            count: number(1).unwrap_or(0.0) as u64,
            sum: number(2).unwrap_or(0.0),
            last_time,
        })
    }

    pub async fn ping(&self) -> Result<(), String> {
        self.influx.ping().await.map_err(|e| e.to_string())
    }
}

/// The value rows of the first statement's first series; none when the
/// measurement holds nothing in range.
fn rows(answer: &serde_json::Value) -> impl Iterator<Item = &Vec<serde_json::Value>> {
    answer["results"][0]["series"][0]["values"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(serde_json::Value::as_array)
}
