//! The aggregator's query parameters, read as a query string
//! (`from=now-5m&step=10s`, not percent-decoded: any text can be a value):
//! `/api/v1/series` (from, to, step, max_points) and `/api/v1/stream` (step,
//! last). Every input gives a grid or a typed error naming a parameter,
//! never a panic or an overflow; a grid is aligned, not empty, and has no
//! more buckets than its documented maximum; an error message stays short
//! however long the value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamproc_grid::{
    step_and_last, Grid, GridError, GridParams, DEFAULT_MAX_POINTS, MAX_POINTS, MAX_QUERY_TIME_MS,
};

/// 2023-11-14T22:13:20Z, the epoch itself, and the latest time a query may
/// name: a fixed "now" each, so that a crash replays.
const NOWS: [i64; 3] = [1_700_000_000_000, 0, MAX_QUERY_TIME_MS];

/// Longest error message accepted: a quoted value is cut to 40 characters,
/// each at most 10 bytes escaped, plus the explanation.
const MAX_MESSAGE_BYTES: usize = 1_000;

const PARAMS: [&str; 5] = ["from", "to", "step", "max_points", "last"];

fuzz_target!(|data: &[u8]| {
    let query = String::from_utf8_lossy(data);
    let pairs: Vec<(String, String)> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, value)) => (name.to_owned(), value.to_owned()),
            None => (pair.to_owned(), String::new()),
        })
        .collect();
    for now in NOWS {
        series(&pairs, now);
        stream(&pairs, now);
    }
});

fn series(pairs: &[(String, String)], now: i64) {
    let params = match GridParams::from_query(pairs) {
        Ok(params) => params,
        Err(error) => return typed(&error),
    };
    let grid = match params.grid(now) {
        Ok(grid) => grid,
        Err(error) => return typed(&error),
    };
    aligned(&grid);
    match (&params.step, &params.max_points) {
        (Some(step), _) => assert_eq!(
            Some(grid.step_ms()),
            streamproc_grid::parse_step(step).ok(),
            "{grid:?} from step {step:?}"
        ),
        // The smallest round step that fits, plus the one bucket rounding
        // out may add.
        (None, max_points) => {
            let max_points = max_points
                .as_deref()
                .map_or(DEFAULT_MAX_POINTS, |m| m.parse().unwrap());
            assert!(
                grid.len() <= max_points + 1,
                "{grid:?} for max_points {max_points}"
            );
        }
    }
}

fn stream(pairs: &[(String, String)], now: i64) {
    let (step, last) = match step_and_last(pairs, now) {
        Ok(ok) => ok,
        Err(error) => return typed(&error),
    };
    assert!((1..=MAX_POINTS).contains(&last), "last {last}");
    // Checked once before streaming so that every tick's grid is valid.
    let grid = Grid::latest(now, step, last).unwrap_or_else(|e| {
        panic!("step {step} and last {last} were accepted, but the grid is refused: {e}")
    });
    aligned(&grid);
    assert_eq!(grid.step_ms(), step);
    assert!(
        grid.len() <= last,
        "{grid:?}: more than last={last} buckets"
    );
    assert!(
        (grid.start_ms()..grid.end_ms()).contains(&now),
        "{grid:?} does not hold now={now}"
    );
}

/// Whole buckets on the epoch grid, at least one and at most `MAX_POINTS`.
fn aligned(grid: &Grid) {
    let (start, end, step) = (grid.start_ms(), grid.end_ms(), grid.step_ms());
    assert!(step >= 1_000 && step % 1_000 == 0, "{grid:?}: step");
    assert!(0 <= start && start < end, "{grid:?}: empty or before 1970");
    assert!(
        start % step == 0 && end % step == 0,
        "{grid:?}: not aligned"
    );
    assert_eq!(
        i128::from(grid.len()) * i128::from(step),
        i128::from(end - start)
    );
    assert!(
        (1..=MAX_POINTS).contains(&grid.len()),
        "{grid:?}: {} buckets",
        grid.len()
    );
}

fn typed(error: &GridError) {
    assert!(
        PARAMS.contains(&error.param()),
        "{error:?} names no parameter"
    );
    let message = error.to_string();
    assert!(
        message.len() <= MAX_MESSAGE_BYTES,
        "a {}-byte message: {message}",
        message.len()
    );
}
