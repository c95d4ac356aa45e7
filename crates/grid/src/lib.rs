//! The time grid a query answers on: buckets of a whole number of seconds,
//! aligned to the Unix epoch. Both stores are asked for exactly this grid, so
//! their series line up bucket for bucket, and every bucket is named by its
//! start.
//!
//! Every number here may come from a client, so every limit is checked
//! before anything is computed from it, and arithmetic that could still
//! overflow is checked or done in `i128`, where a product or sum of two
//! `i64` cannot.

/// Most buckets one series may have.
pub const MAX_POINTS: i64 = 10_000;
/// Buckets per series when neither `step` nor `max_points` is given.
pub const DEFAULT_MAX_POINTS: i64 = 300;
/// The window when `from` is not given: the last ten minutes before `to`.
pub const DEFAULT_RANGE_MS: i64 = 600_000;
/// Latest time a query may name: 2100-01-01T00:00:00Z. InfluxDB keeps
/// nanoseconds in an `i64`, so it cannot be asked about anything after
/// 2262; with times and steps both at most this, a grid's end (less than
/// `to + step`) stays within that.
pub const MAX_QUERY_TIME_MS: i64 = 4_102_444_800_000;
/// Widest bucket: the whole queryable range, which is whole days (47 482),
/// so `max_points=1` over the longest range still finds a step.
pub const MAX_STEP_MS: i64 = MAX_QUERY_TIME_MS;

const SECOND_MS: i64 = 1000;
const DAY_MS: i64 = 86_400_000;

/// Steps chosen from `max_points`, in seconds: round values a reader expects
/// on a time axis; beyond a day, whole days.
const NICE_STEPS: [i64; 18] = [
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
];

/// Longest part of a client's value an error message quotes, so that an
/// answer does not grow with the request.
const QUOTE_CHARS: usize = 40;

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
    #[error("{param} is given more than once")]
    Repeated { param: &'static str },
    #[error("{param} must be between {min} and {max} (got {value})")]
    OutOfRange {
        param: &'static str,
        value: String,
        min: i64,
        max: i64,
    },
    #[error("give step or max_points, not both")]
    StepAndMaxPoints,
    #[error("from must be before to (from={from} ms, to={to} ms)")]
    EmptyRange { from: i64, to: i64 },
    #[error("step must be a whole number of seconds, at least 1s (got {0} ms)")]
    StepNotWholeSeconds(i64),
    #[error("step must be at most {MAX_STEP_MS} ms, 47482 days (got {0} ms)")]
    StepTooLarge(i64),
    #[error("step {step_ms} ms gives {points} buckets for this range, more than {MAX_POINTS}: use a larger step or a shorter range")]
    StepTooSmall { step_ms: i64, points: i128 },
    #[error("max_points {max_points}: no step up to {MAX_STEP_MS} ms fits this range")]
    NoStepFits { max_points: i64 },
    #[error("to: the grid would end after {MAX_QUERY_TIME_MS} ms")]
    AfterEnd,
}

impl GridError {
    /// The query parameter to blame.
    pub fn param(&self) -> &'static str {
        match self {
            Self::Unparsable { param, .. }
            | Self::Repeated { param }
            | Self::OutOfRange { param, .. } => param,
            Self::EmptyRange { .. } => "from",
            Self::AfterEnd => "to",
            Self::StepAndMaxPoints
            | Self::StepNotWholeSeconds(_)
            | Self::StepTooLarge(_)
            | Self::StepTooSmall { .. } => "step",
            Self::NoStepFits { .. } => "max_points",
        }
    }
}

/// At most [`QUOTE_CHARS`] of `value`, marked when cut.
fn quote(value: &str) -> String {
    match value.char_indices().nth(QUOTE_CHARS) {
        Some((cut, _)) => format!("{}…", &value[..cut]),
        None => value.to_owned(),
    }
}

/// `value` of `param` could not be read, and why; the value is quoted to a
/// bounded length.
pub fn unparsable(param: &'static str, value: &str, reason: impl Into<String>) -> GridError {
    GridError::Unparsable {
        param,
        value: quote(value),
        reason: reason.into(),
    }
}

/// `from..to` is not empty and within the times a query may name.
fn check_range(from: i64, to: i64) -> Result<(), GridError> {
    let out_of_range = |param, value: i64| GridError::OutOfRange {
        param,
        value: value.to_string(),
        min: 0,
        max: MAX_QUERY_TIME_MS,
    };
    if from < 0 {
        return Err(out_of_range("from", from));
    }
    if to > MAX_QUERY_TIME_MS {
        return Err(out_of_range("to", to));
    }
    if from >= to {
        return Err(GridError::EmptyRange { from, to });
    }
    Ok(())
}

/// A step is whole seconds, at least one, at most [`MAX_STEP_MS`].
fn check_step(step_ms: i64) -> Result<(), GridError> {
    if step_ms < SECOND_MS || step_ms % SECOND_MS != 0 {
        return Err(GridError::StepNotWholeSeconds(step_ms));
    }
    if step_ms > MAX_STEP_MS {
        return Err(GridError::StepTooLarge(step_ms));
    }
    Ok(())
}

impl Grid {
    /// The grid with buckets of `step_ms` that covers `from..to`: `from`
    /// rounded down and `to` rounded up to whole buckets, so the bucket in
    /// progress is included. Refuses more than [`MAX_POINTS`] buckets
    /// before anything is allocated for them.
    pub fn covering(from: i64, to: i64, step_ms: i64) -> Result<Self, GridError> {
        check_range(from, to)?;
        check_step(step_ms)?;
        let step = i128::from(step_ms);
        let start = i128::from(from).div_euclid(step) * step;
        let end = (i128::from(to) + step - 1).div_euclid(step) * step;
        let points = (end - start) / step;
        if points > i128::from(MAX_POINTS) {
            return Err(GridError::StepTooSmall { step_ms, points });
        }
        // Cannot fail with the range and step checked above; kept so that a
        // change to those checks cannot turn into a wrapped time.
        let (Ok(from), Ok(to)) = (i64::try_from(start), i64::try_from(end)) else {
            return Err(GridError::AfterEnd);
        };
        Ok(Self {
            from,
            to,
            step: step_ms,
        })
    }

    /// The grid over `from..to` with the smallest round step that splits the
    /// range into at most `max_points` buckets. Rounding the range out to
    /// whole buckets may add one more, as in Grafana.
    pub fn with_max_points(from: i64, to: i64, max_points: i64) -> Result<Self, GridError> {
        if !(1..=MAX_POINTS).contains(&max_points) {
            return Err(GridError::OutOfRange {
                param: "max_points",
                value: max_points.to_string(),
                min: 1,
                max: MAX_POINTS,
            });
        }
        check_range(from, to)?;
        let span = i128::from(to) - i128::from(from);
        let days = (1..=MAX_STEP_MS / DAY_MS).map(|d| d * DAY_MS);
        NICE_STEPS
            .into_iter()
            .map(|seconds| seconds * SECOND_MS)
            .chain(days)
            .filter(|&step| {
                let step = i128::from(step);
                (span + step - 1) / step <= i128::from(max_points)
            })
            .find_map(|step| Self::covering(from, to, step).ok())
            .ok_or(GridError::NoStepFits { max_points })
    }

    /// The `buckets` most recent buckets of `step_ms`, the one holding `now`
    /// last; fewer when they would reach back before 1970, where no event
    /// is (so that any `step` and `last` within their bounds are valid
    /// together, as the API document says).
    pub fn latest(now: i64, step_ms: i64, buckets: i64) -> Result<Self, GridError> {
        if !(1..=MAX_POINTS).contains(&buckets) {
            return Err(GridError::OutOfRange {
                param: "last",
                value: buckets.to_string(),
                min: 1,
                max: MAX_POINTS,
            });
        }
        let next = now.checked_add(1).ok_or(GridError::AfterEnd)?;
        let current = Self::covering(now, next, step_ms)?;
        // 0 is on every grid, so stopping there keeps whole buckets.
        let from = buckets
            .checked_mul(step_ms)
            .and_then(|span| current.to.checked_sub(span))
            .map_or(0, |from| from.max(0));
        Self::covering(from, current.to, step_ms)
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

    /// How many buckets; at most [`MAX_POINTS`], by construction.
    // Never empty: every constructor refuses an empty range.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> i64 {
        (self.to - self.from) / self.step
    }

    /// The start of every bucket, in order.
    pub fn starts(&self) -> impl Iterator<Item = i64> {
        let Self { from, step, .. } = *self;
        // Each start is below `to`, so none of these can overflow.
        (0..self.len()).map(move |i| from + i * step)
    }
}

/// The query parameters that name a grid (`/api/v1/series`).
pub const GRID_PARAMETERS: [&str; 4] = ["from", "to", "step", "max_points"];
/// The query parameters of `/api/v1/stream`.
pub const STREAM_PARAMETERS: [&str; 2] = ["step", "last"];

/// The query parameters that choose a grid, as given (read here rather than
/// by serde so that errors name the parameter).
#[derive(Debug, Default, Clone)]
pub struct GridParams {
    pub from: Option<String>,
    pub to: Option<String>,
    pub step: Option<String>,
    pub max_points: Option<String>,
}

impl GridParams {
    /// From a query's `(name, value)` pairs.
    pub fn from_query(pairs: &[(String, String)]) -> Result<Self, GridError> {
        let [from, to, step, max_points] = take(pairs, GRID_PARAMETERS)?;
        Ok(Self {
            from,
            to,
            step,
            max_points,
        })
    }

    pub fn grid(&self, now: i64) -> Result<Grid, GridError> {
        let to = match &self.to {
            Some(to) => parse_time("to", to, now)?,
            None => now,
        };
        let from = match &self.from {
            Some(from) => parse_time("from", from, now)?,
            None => to.saturating_sub(DEFAULT_RANGE_MS).max(0),
        };
        match (&self.step, &self.max_points) {
            (Some(_), Some(_)) => Err(GridError::StepAndMaxPoints),
            (Some(step), None) => Grid::covering(from, to, parse_step(step)?),
            (None, max_points) => {
                let max_points = match max_points {
                    Some(value) => parse_natural("max_points", value, 1, MAX_POINTS)?,
                    None => DEFAULT_MAX_POINTS,
                };
                Grid::with_max_points(from, to, max_points)
            }
        }
    }
}

/// The values of `names` among a query's `(name, value)` pairs. Other names
/// are ignored; one of `names` given twice is an error, since either value
/// could be the one meant.
pub fn take<const N: usize>(
    pairs: &[(String, String)],
    names: [&'static str; N],
) -> Result<[Option<String>; N], GridError> {
    let mut values: [Option<String>; N] = std::array::from_fn(|_| None);
    for (name, value) in pairs {
        if let Some(i) = names.iter().position(|n| n == name) {
            if values[i].replace(value.clone()).is_some() {
                return Err(GridError::Repeated { param: names[i] });
            }
        }
    }
    Ok(values)
}

/// Units of a duration in `now-<duration>`, longest first where one is the
/// start of another.
const TIME_UNITS: [(&str, i64); 5] = [
    ("ms", 1),
    ("s", SECOND_MS),
    ("m", 60 * SECOND_MS),
    ("h", 3_600 * SECOND_MS),
    ("d", DAY_MS),
];
/// Units of a step: none finer than the second a step is made of.
const STEP_UNITS: [(&str, i64); 4] = [
    ("s", SECOND_MS),
    ("m", 60 * SECOND_MS),
    ("h", 3_600 * SECOND_MS),
    ("d", DAY_MS),
];

/// A time: Unix milliseconds, `now`, or `now-<duration>` such as `now-1h`,
/// within `0..=MAX_QUERY_TIME_MS`.
pub fn parse_time(param: &'static str, value: &str, now: i64) -> Result<i64, GridError> {
    let ms = if value == "now" {
        now
    } else if let Some(ago) = value.strip_prefix("now-") {
        let ago = parse_duration(param, value, ago, &TIME_UNITS)?;
        now.checked_sub(ago)
            .filter(|ms| *ms >= 0)
            .ok_or_else(|| unparsable(param, value, "reaches back before 1970"))?
    } else if is_digits(value) {
        parse_natural(param, value, 0, MAX_QUERY_TIME_MS)?
    } else {
        return Err(unparsable(
            param,
            value,
            "expected Unix milliseconds, now or now-<duration> such as now-1h or now-90s",
        ));
    };
    if !(0..=MAX_QUERY_TIME_MS).contains(&ms) {
        return Err(GridError::OutOfRange {
            param,
            value: quote(value),
            min: 0,
            max: MAX_QUERY_TIME_MS,
        });
    }
    Ok(ms)
}

/// A step: a duration such as `10s`, `1m` or `1h30m`, or a bare number of
/// seconds; whole seconds, at most [`MAX_STEP_MS`].
pub fn parse_step(value: &str) -> Result<i64, GridError> {
    let step_ms = if is_digits(value) {
        let seconds = parse_natural("step", value, 1, MAX_STEP_MS / SECOND_MS)?;
        // Within MAX_STEP_MS by the bound just checked.
        seconds * SECOND_MS
    } else {
        parse_duration("step", value, value, &STEP_UNITS)?
    };
    check_step(step_ms)?;
    Ok(step_ms)
}

fn is_digits(value: &str) -> bool {
    !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit())
}

/// A whole number written in decimal digits only (no sign, no spaces),
/// within `min..=max`.
pub fn parse_natural(
    param: &'static str,
    value: &str,
    min: i64,
    max: i64,
) -> Result<i64, GridError> {
    if !is_digits(value) {
        return Err(unparsable(param, value, "expected a whole number"));
    }
    // Digits only, so the one way to fail is being too large for an i64.
    match value.parse::<i64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(GridError::OutOfRange {
            param,
            value: quote(value),
            min,
            max,
        }),
    }
}

/// Milliseconds in `text`, one or more `<digits><unit>` such as `1h30m`;
/// `value` is the parameter as given, for the error.
fn parse_duration(
    param: &'static str,
    value: &str,
    text: &str,
    units: &[(&str, i64)],
) -> Result<i64, GridError> {
    let names: Vec<&str> = units.iter().map(|(name, _)| *name).collect();
    let expected = || {
        unparsable(
            param,
            value,
            format!(
                "expected a duration such as 90s, 10m or 1h30m (units {})",
                names.join(", ")
            ),
        )
    };
    let too_large = || unparsable(param, value, "too large");
    if text.is_empty() {
        return Err(expected());
    }
    let mut total: i64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return Err(expected());
        }
        let number: i64 = rest[..digits].parse().map_err(|_| too_large())?;
        rest = &rest[digits..];
        let (unit, unit_ms) = units
            .iter()
            .find(|(unit, _)| rest.starts_with(unit))
            .ok_or_else(expected)?;
        rest = &rest[unit.len()..];
        total = number
            .checked_mul(*unit_ms)
            .and_then(|ms| total.checked_add(ms))
            .ok_or_else(too_large)?;
    }
    Ok(total)
}

/// `/api/v1/stream`'s bucket when `step` is not given.
pub const DEFAULT_STEP_MS: i64 = 1_000;
/// How many buckets `/api/v1/stream` sends when `last` is not given.
pub const DEFAULT_LAST: i64 = 60;

/// `step` and `last`, checked once before streaming so that every tick's
/// grid is valid (`/api/v1/stream`).
pub fn step_and_last(pairs: &[(String, String)], now: i64) -> Result<(i64, i64), GridError> {
    let [step, last] = take(pairs, STREAM_PARAMETERS)?;
    let step = match step {
        Some(step) => parse_step(&step)?,
        None => DEFAULT_STEP_MS,
    };
    let last = match last {
        Some(last) => parse_natural("last", &last, 1, MAX_POINTS)?,
        None => DEFAULT_LAST,
    };
    Grid::latest(now, step, last)?;
    Ok((step, last))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> GridParams {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        GridParams::from_query(&pairs).unwrap()
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
        let early = params(&[("to", "1000")]).grid(NOW).unwrap();
        assert_eq!(early.start_ms(), 0, "the default from stops at 1970");
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
        let everything = Grid::with_max_points(0, MAX_QUERY_TIME_MS, 1).unwrap();
        assert_eq!((everything.len(), everything.step_ms()), (1, MAX_STEP_MS));
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
        assert_eq!(parse_time("from", "now-1h30m", NOW), Ok(NOW - 5_400_000));
        assert_eq!(parse_time("from", "now-1500ms", NOW), Ok(NOW - 1_500));
        assert_eq!(parse_time("from", "now-2d", NOW), Ok(NOW - 172_800_000));
        assert_eq!(parse_time("from", "1000", NOW), Ok(1000));
        assert_eq!(parse_time("from", "0", NOW), Ok(0));
        assert_eq!(
            parse_time("to", "4102444800000", NOW),
            Ok(MAX_QUERY_TIME_MS)
        );
        assert_eq!(parse_step("10s"), Ok(10_000));
        assert_eq!(parse_step("1m"), Ok(60_000));
        assert_eq!(parse_step("1m30s"), Ok(90_000));
        assert_eq!(parse_step("5"), Ok(5_000));
        assert_eq!(parse_step("47482d"), Ok(MAX_STEP_MS));
    }

    #[test]
    fn every_bad_parameter_is_named() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("from", "yesterday")], "from"),
            (&[("to", "12:00")], "to"),
            (&[("from", "-5")], "from"),
            (&[("from", "+5")], "from"),
            (&[("from", " 5")], "from"),
            (&[("from", "")], "from"),
            (&[("from", "now-")], "from"),
            (&[("from", "now-1x")], "from"),
            (&[("from", "now-h")], "from"),
            (&[("from", "now"), ("to", "now-1m")], "from"),
            (&[("to", "0")], "from"),
            (&[("to", "4102444800001")], "to"),
            (&[("step", "fast")], "step"),
            (&[("step", "")], "step"),
            (&[("step", "0")], "step"),
            (&[("step", "0s")], "step"),
            (&[("step", "500ms")], "step"),
            (&[("step", "1.5s")], "step"),
            (&[("from", "now-24h"), ("step", "1s")], "step"),
            (&[("max_points", "0")], "max_points"),
            (&[("max_points", "")], "max_points"),
            (&[("max_points", "10001")], "max_points"),
            (&[("max_points", "-1")], "max_points"),
            (&[("step", "1s"), ("max_points", "10")], "step"),
        ];
        for (pairs, param) in cases {
            let error = params(pairs).grid(NOW).unwrap_err();
            assert_eq!(error.param(), *param, "{pairs:?}: {error}");
            assert!(error.to_string().contains(param), "{pairs:?}: {error}");
        }
    }

    #[test]
    fn a_parameter_given_twice_is_named() {
        let pairs = [("step", "1s"), ("from", "now-1h"), ("step", "2s")]
            .map(|(k, v)| (k.to_string(), v.to_string()));
        let error = GridParams::from_query(&pairs).unwrap_err();
        assert_eq!(error.param(), "step", "{error}");
        let unknown = [("x", "1"), ("x", "2")].map(|(k, v)| (k.to_string(), v.to_string()));
        assert!(
            GridParams::from_query(&unknown).is_ok(),
            "others are ignored"
        );
    }

    #[test]
    fn extreme_integers_are_refused_without_overflow() {
        let u64_max = u64::MAX.to_string();
        let i64_max = i64::MAX.to_string();
        let i64_min = i64::MIN.to_string();
        for value in [&u64_max, &i64_max, &i64_min, &format!("{u64_max}0")] {
            for param in ["from", "to"] {
                let error = parse_time(param, value, NOW).unwrap_err();
                assert_eq!(error.param(), param, "{value}: {error}");
            }
            assert_eq!(parse_step(value).unwrap_err().param(), "step");
            let error = parse_natural("max_points", value, 1, MAX_POINTS).unwrap_err();
            assert_eq!(error.param(), "max_points");
        }
        for step in [
            "9223372036854775807s",
            "9223372036854775807d",
            "18446744073709551615s",
            "99999999999999999999999999d",
            "106751991167301d",
            "9223372036854775s1s",
            "4102444801",
            "47483d",
        ] {
            assert_eq!(parse_step(step).unwrap_err().param(), "step", "{step}");
        }
    }

    #[test]
    fn now_minus_enormous_durations_is_refused() {
        for ago in [
            "now-9223372036854775807ms",
            "now-9223372036854775808ms",
            "now-9223372036854775807d",
            "now-106751991167301d",
            "now-18446744073709551615s",
            "now-99999999999999999999999999999h",
            "now-9223372036854775807ms9223372036854775807ms",
            "now-1700000123457ms",
            "now-20000d",
        ] {
            let error = parse_time("from", ago, NOW).unwrap_err();
            assert_eq!(error.param(), "from", "{ago}: {error}");
        }
        assert_eq!(parse_time("from", "now-1700000123456ms", NOW), Ok(0));
    }

    #[test]
    fn grid_edges_never_overflow_or_exceed_the_bucket_limit() {
        let edges = [
            i64::MIN,
            i64::MIN + 1,
            -1,
            0,
            1,
            999,
            1_000,
            NOW,
            MAX_QUERY_TIME_MS - 1,
            MAX_QUERY_TIME_MS,
            MAX_QUERY_TIME_MS + 1,
            i64::MAX - 1,
            i64::MAX,
        ];
        let steps = [
            i64::MIN,
            -1_000,
            0,
            1,
            1_000,
            86_400_000,
            MAX_STEP_MS,
            MAX_STEP_MS + 1_000,
            i64::MAX / 1_000 * 1_000,
            i64::MAX,
        ];
        for &from in &edges {
            for &to in &edges {
                for &step in &steps {
                    if let Ok(grid) = Grid::covering(from, to, step) {
                        assert!((1..=MAX_POINTS).contains(&grid.len()), "{grid:?}");
                        assert!(grid.start_ms() >= 0 && grid.start_ms() <= from);
                        assert!(grid.end_ms() >= to);
                    }
                    for buckets in [i64::MIN, -1, 0, 1, MAX_POINTS, MAX_POINTS + 1, i64::MAX] {
                        if let Ok(grid) = Grid::latest(to, step, buckets) {
                            assert!((1..=buckets).contains(&grid.len()), "{grid:?}");
                            assert!(grid.start_ms() >= 0);
                            assert!(grid.end_ms() > to);
                        }
                    }
                }
                for max_points in [i64::MIN, 0, 1, MAX_POINTS, MAX_POINTS + 1, i64::MAX] {
                    if let Ok(grid) = Grid::with_max_points(from, to, max_points) {
                        assert!(grid.len() <= max_points + 1, "{grid:?}");
                        assert!(grid.len() <= MAX_POINTS, "{grid:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn huge_step_over_a_tiny_range_is_one_bucket() {
        let grid = Grid::covering(NOW, NOW + 1, MAX_STEP_MS).unwrap();
        assert_eq!((grid.start_ms(), grid.len()), (0, 1));
        let grid = params(&[("from", "now-1s"), ("step", "4102444800")])
            .grid(NOW)
            .unwrap();
        assert_eq!(grid.len(), 1);
        assert_eq!(
            Grid::covering(NOW, NOW + 1, MAX_STEP_MS + 1_000),
            Err(GridError::StepTooLarge(MAX_STEP_MS + 1_000))
        );
        let latest = Grid::latest(NOW, MAX_STEP_MS, 2).unwrap();
        assert_eq!(
            (latest.start_ms(), latest.len()),
            (0, 1),
            "only the bucket after 1970"
        );
    }

    #[test]
    fn tiny_step_over_a_huge_range_is_refused_before_allocating() {
        let error = Grid::covering(0, MAX_QUERY_TIME_MS, 1_000).unwrap_err();
        assert_eq!(
            error,
            GridError::StepTooSmall {
                step_ms: 1_000,
                points: 4_102_444_800
            }
        );
        let error = params(&[("from", "0"), ("to", "4102444800000"), ("step", "1")])
            .grid(NOW)
            .unwrap_err();
        assert_eq!(error.param(), "step");
        assert_eq!(
            Grid::latest(NOW, 1_000, MAX_POINTS + 1)
                .unwrap_err()
                .param(),
            "last"
        );
        assert_eq!(
            Grid::latest(NOW, 1_000, i64::MAX).unwrap_err().param(),
            "last"
        );
    }

    #[test]
    fn errors_quote_only_the_start_of_a_long_value() {
        let long = "x".repeat(100_000);
        for error in [
            parse_time("from", &long, NOW).unwrap_err(),
            parse_step(&long).unwrap_err(),
            parse_natural("last", &"9".repeat(100_000), 1, MAX_POINTS).unwrap_err(),
        ] {
            assert!(error.to_string().len() < 300, "{error}");
        }
    }
}
