//! What a store answers for one bucket, and the zero-filled series built
//! from it on a [`Grid`].

use std::collections::HashMap;

use serde::Serialize;
use utoipa::ToSchema;

use streamproc_grid::Grid;

/// The events of one bucket in one store.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

/// One bucket of a series, named by its start. An empty bucket has count 0
/// and sum 0, and no min, max or mean.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Point {
    /// Bucket start, Unix ms.
    pub time: i64,
    pub count: u64,
    pub sum: f64,
    #[schema(required = true)]
    pub min: Option<f64>,
    #[schema(required = true)]
    pub max: Option<f64>,
    #[schema(required = true)]
    pub mean: Option<f64>,
}

/// One point per bucket of `grid`, from the store's non-empty buckets
/// (`(bucket start, stats)`); every other bucket is empty.
pub fn zero_filled(grid: &Grid, buckets: &[(i64, Stats)]) -> Vec<Point> {
    let by_start: HashMap<i64, &Stats> = buckets.iter().map(|(t, s)| (*t, s)).collect();
    grid.starts()
        .map(|time| match by_start.get(&time) {
            Some(stats) if stats.count > 0 => Point {
                time,
                count: stats.count,
                sum: stats.sum,
                min: Some(stats.min),
                max: Some(stats.max),
                mean: Some(stats.sum / stats.count as f64),
            },
            _ => Point {
                time,
                count: 0,
                sum: 0.0,
                min: None,
                max: None,
                mean: None,
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bucket_is_present_and_empty_ones_have_no_mean() {
        let grid = Grid::covering(0, 30_000, 10_000).unwrap();
        let stats = Stats {
            count: 2,
            sum: 3.0,
            min: 1.0,
            max: 2.0,
        };
        let points = zero_filled(&grid, &[(10_000, stats)]);
        assert_eq!(points.len(), 3);
        assert_eq!(
            (points[0].time, points[0].count, points[0].mean),
            (0, 0, None)
        );
        assert_eq!((points[1].count, points[1].mean), (2, Some(1.5)));
        assert_eq!(points[2].time, 20_000);
    }
}
