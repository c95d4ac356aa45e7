//! The time grid a query answers on: buckets of a whole number of seconds,
//! aligned to the Unix epoch. Both stores are asked for exactly this grid, so
//! their series line up bucket for bucket, and every bucket is named by its
//! start.

use std::time::Duration;

use streamproc::event::MAX_TIME_MS;

/// Most buckets one series may have.
pub const MAX_POINTS: i64 = 10_000;
/// Buckets per series when neither `step` nor `max_points` is given.
pub const DEFAULT_MAX_POINTS: i64 = 300;
/// The window when `from` is not given: the last ten minutes before `to`.
pub const DEFAULT_RANGE: Duration = Duration::from_secs(600);

const SECOND_MS: i64 = 1000;

/// Steps chosen from `max_points`, in seconds: round values a reader expects
/// on a time axis; beyond a day, whole days.
const NICE_STEPS: [i64; 18] = [
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    from: i64,
    to: i64,
    step: i64,
}

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum GridError {
    #[error("{param}: cannot read {value:?}: {reason}")]
    Unparsable {
        param: &'static str,
        value: String,
        reason: String,
    },
    #[error("from must be before to (from={from} ms, to={to} ms)")]
    EmptyRange { from: i64, to: i64 },
    #[error("step must be a whole number of seconds, at least 1s (got {0} ms)")]
    StepNotWholeSeconds(i64),
    #[error("step {step_ms} ms gives {points} buckets for this range, more than {MAX_POINTS}: use a larger step or a shorter range")]
    StepTooSmall { step_ms: i64, points: i64 },
    #[error("max_points must be between 1 and {MAX_POINTS} (got {0})")]
    MaxPointsOutOfRange(i64),
    #[error("give step or max_points, not both")]
    StepAndMaxPoints,
}

impl GridError {
    /// The query parameter to blame.
    pub fn param(&self) -> &'static str {
        match self {
            Self::Unparsable { param, .. } => param,
            Self::EmptyRange { .. } => "from",
            Self::StepNotWholeSeconds(_) | Self::StepTooSmall { .. } | Self::StepAndMaxPoints => {
                "step"
            }
            Self::MaxPointsOutOfRange(_) => "max_points",
        }
    }
}

impl Grid {
    /// The grid with buckets of `step_ms` that covers `from..to`: `from`
    /// rounded down and `to` rounded up to whole buckets, so the bucket in
    /// progress is included.
    pub fn covering(from: i64, to: i64, step_ms: i64) -> Result<Self, GridError> {
        if from >= to {
            return Err(GridError::EmptyRange { from, to });
        }
        if step_ms < SECOND_MS || step_ms % SECOND_MS != 0 {
            return Err(GridError::StepNotWholeSeconds(step_ms));
        }
        let grid = Self {
            from: from.div_euclid(step_ms) * step_ms,
            to: to.div_euclid(step_ms) * step_ms + if to % step_ms == 0 { 0 } else { step_ms },
            step: step_ms,
        };
        if grid.len() > MAX_POINTS {
            return Err(GridError::StepTooSmall {
                step_ms,
                points: grid.len(),
            });
        }
        Ok(grid)
    }

    /// The grid over `from..to` with the smallest round step that splits the
    /// range into at most `max_points` buckets. Rounding the range out to
    /// whole buckets may add one more, as in Grafana.
    pub fn with_max_points(from: i64, to: i64, max_points: i64) -> Result<Self, GridError> {
        if !(1..=MAX_POINTS).contains(&max_points) {
            return Err(GridError::MaxPointsOutOfRange(max_points));
        }
        if from >= to {
            return Err(GridError::EmptyRange { from, to });
        }
        let days = (1..).map(|d| d * 86_400);
        NICE_STEPS
            .into_iter()
            .chain(days)
            .map(|seconds| seconds * SECOND_MS)
            .filter(|step| (to - from + step - 1) / step <= max_points)
            .find_map(|step| Self::covering(from, to, step).ok())
            .ok_or(GridError::MaxPointsOutOfRange(max_points))
    }

    /// The `buckets` most recent buckets of `step_ms`, the one holding `now`
    /// last.
    pub fn latest(now: i64, step_ms: i64, buckets: i64) -> Result<Self, GridError> {
        let current = Self::covering(now, now + 1, step_ms)?;
        Self::covering(current.to - buckets * step_ms, current.to, step_ms)
    }

    pub fn start_ms(&self) -> i64 {
        self.from
    }

    /// End of the last bucket (exclusive).
    pub fn end_ms(&self) -> i64 {
        self.to
    }

    pub fn step_ms(&self) -> i64 {
        self.step
    }

    pub fn len(&self) -> i64 {
        (self.to - self.from) / self.step
    }

    /// The start of every bucket, in order.
    pub fn starts(&self) -> impl Iterator<Item = i64> {
        (self.from..self.to).step_by(self.step as usize)
    }
}

/// The query parameters that choose a grid, as given (read here rather than
/// by serde so that errors name the parameter).
#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct GridParams {
    pub from: Option<String>,
    pub to: Option<String>,
    pub step: Option<String>,
    pub max_points: Option<String>,
}

impl GridParams {
    pub fn grid(&self, now: i64) -> Result<Grid, GridError> {
        let to = match &self.to {
            Some(to) => parse_time("to", to, now)?,
            None => now,
        };
        let from = match &self.from {
            Some(from) => parse_time("from", from, now)?,
            None => to - DEFAULT_RANGE.as_millis() as i64,
        };
        match (&self.step, &self.max_points) {
            (Some(_), Some(_)) => Err(GridError::StepAndMaxPoints),
            (Some(step), None) => Grid::covering(from, to, parse_step(step)?),
            (None, max_points) => {
                let max_points = match max_points {
                    Some(value) => parse_integer("max_points", value)?,
                    None => DEFAULT_MAX_POINTS,
                };
                Grid::with_max_points(from, to, max_points)
            }
        }
    }
}

/// A time: Unix milliseconds, `now`, or `now-<duration>` such as `now-1h`.
pub fn parse_time(param: &'static str, value: &str, now: i64) -> Result<i64, GridError> {
    let unparsable = |reason: String| GridError::Unparsable {
        param,
        value: value.to_owned(),
        reason,
    };
    let trimmed = value.trim();
    let ms = if trimmed == "now" {
        now
    } else if let Some(ago) = trimmed.strip_prefix("now-") {
        let ago = humantime::parse_duration(ago).map_err(|e| unparsable(e.to_string()))?;
        now.saturating_sub(i64::try_from(ago.as_millis()).unwrap_or(i64::MAX))
    } else {
        trimmed.parse::<i64>().map_err(|_| {
            unparsable("expected Unix milliseconds, now or now-<duration> such as now-1h".into())
        })?
    };
    if !(0..=MAX_TIME_MS).contains(&ms) {
        return Err(unparsable(format!(
            "outside 0..={MAX_TIME_MS} Unix milliseconds"
        )));
    }
    Ok(ms)
}

/// A step: a duration such as `10s` or `1m`, or a bare number of seconds.
pub fn parse_step(value: &str) -> Result<i64, GridError> {
    let trimmed = value.trim();
    let duration = match trimmed.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => humantime::parse_duration(trimmed).map_err(|e| GridError::Unparsable {
            param: "step",
            value: value.to_owned(),
            reason: format!("{e} (expected a duration such as 10s or 1m)"),
        })?,
    };
    i64::try_from(duration.as_millis()).map_err(|_| GridError::Unparsable {
        param: "step",
        value: value.to_owned(),
        reason: "too large".into(),
    })
}

pub fn parse_integer(param: &'static str, value: &str) -> Result<i64, GridError> {
    value.trim().parse().map_err(|_| GridError::Unparsable {
        param,
        value: value.to_owned(),
        reason: "expected an integer".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> GridParams {
        let get = |key: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.to_string())
        };
        GridParams {
            from: get("from"),
            to: get("to"),
            step: get("step"),
            max_points: get("max_points"),
        }
    }

    const NOW: i64 = 1_700_000_123_456;

    #[test]
    fn buckets_start_on_the_epoch_grid_and_include_the_partial_last_one() {
        let grid = Grid::covering(1_005, 31_000, 10_000).unwrap();
        assert_eq!((grid.start_ms(), grid.end_ms(), grid.len()), (0, 40_000, 4));
        assert_eq!(
            grid.starts().collect::<Vec<_>>(),
            [0, 10_000, 20_000, 30_000]
        );
        let exact = Grid::covering(10_000, 30_000, 10_000).unwrap();
        assert_eq!((exact.start_ms(), exact.end_ms()), (10_000, 30_000));
    }

    #[test]
    fn defaults_are_the_last_ten_minutes() {
        let grid = params(&[]).grid(NOW).unwrap();
        assert_eq!(grid.step_ms(), 2_000, "600 s in 300 buckets");
        assert!(grid.start_ms() <= NOW - 600_000 && grid.end_ms() > NOW);
        assert_eq!(
            grid.len(),
            DEFAULT_MAX_POINTS + 1,
            "rounded out to whole buckets"
        );
    }

    #[test]
    fn max_points_picks_the_smallest_round_step_that_fits() {
        let hour = |max: &str| {
            params(&[("from", "now-1h"), ("max_points", max)])
                .grid(NOW)
                .unwrap()
        };
        assert_eq!(hour("3600").step_ms(), 1_000);
        assert_eq!(hour("3599").step_ms(), 2_000);
        assert_eq!(hour("100").step_ms(), 60_000);
        assert_eq!(hour("1").step_ms(), 3_600_000);
        let decade = params(&[("from", "now-3650d"), ("max_points", "3")])
            .grid(NOW)
            .unwrap();
        assert!(decade.len() <= 4 && decade.step_ms() % 86_400_000 == 0);
    }

    #[test]
    fn latest_ends_with_the_bucket_holding_now() {
        let grid = Grid::latest(25_500, 10_000, 3).unwrap();
        assert_eq!((grid.start_ms(), grid.end_ms()), (0, 30_000));
    }

    #[test]
    fn times_and_steps_in_every_accepted_spelling() {
        assert_eq!(parse_time("from", "now", NOW), Ok(NOW));
        assert_eq!(parse_time("from", "now-1m", NOW), Ok(NOW - 60_000));
        assert_eq!(parse_time("from", "1000", NOW), Ok(1000));
        assert_eq!(parse_step("10s"), Ok(10_000));
        assert_eq!(parse_step("1m"), Ok(60_000));
        assert_eq!(parse_step("5"), Ok(5_000));
    }

    #[test]
    fn every_bad_parameter_is_named() {
        let cases: [(&[(&str, &str)], &str); 9] = [
            (&[("from", "yesterday")], "from"),
            (&[("to", "12:00")], "to"),
            (&[("from", "-5")], "from"),
            (&[("from", "now"), ("to", "now-1m")], "from"),
            (&[("step", "fast")], "step"),
            (&[("step", "500ms")], "step"),
            (&[("from", "now-24h"), ("step", "1s")], "step"),
            (&[("max_points", "0")], "max_points"),
            (&[("step", "1s"), ("max_points", "10")], "step"),
        ];
        for (pairs, param) in cases {
            let error = params(pairs).grid(NOW).unwrap_err();
            assert_eq!(error.param(), param, "{pairs:?}: {error}");
        }
    }
}
