//! CPU used over the timed part of a baseline, by this program and by the
//! processes it is told to watch (the broker, the service under load), in
//! cores. A ratio below its goal is explained by whichever is at its limit:
//! a broker near a core, a service near a core, or neither (latency bound).

use std::time::{Duration, Instant};

use anyhow::Context;

/// `--watch NAME=PID`, and the unit of the kernel's CPU counters.
#[derive(Debug, Clone, clap::Args)]
pub struct Watch {
    /// A process whose CPU over the timed part to report, as NAME=PID;
    /// repeat for several.
    #[arg(long = "watch", global = true, value_parser = parse_watch)]
    processes: Vec<(String, u32)>,
    /// Ticks per second of /proc/PID/stat's CPU times (`getconf CLK_TCK`).
    #[arg(long, global = true, default_value_t = 100)]
    clock_ticks: u32,
}

fn parse_watch(value: &str) -> Result<(String, u32), String> {
    let (name, pid) = value
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=PID, got {value:?}"))?;
    let pid = pid.parse().map_err(|e| format!("PID {pid:?}: {e}"))?;
    Ok((name.to_owned(), pid))
}

/// CPU ticks, user plus system, of every thread of a process.
fn ticks(process: &str) -> anyhow::Result<u64> {
    let path = format!("/proc/{process}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // Fields after the command name, which is in parentheses and may
    // contain spaces; utime and stime are fields 14 and 15 of the line.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("no command name in /proc/PID/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| -> anyhow::Result<u64> {
        Ok(fields
            .get(i)
            .context("a short /proc/PID/stat")?
            .parse::<u64>()?)
    };
    Ok(field(11)? + field(12)?)
}

pub struct Stopwatch<'a> {
    watch: &'a Watch,
    started: Instant,
    before: Vec<anyhow::Result<u64>>,
    own: anyhow::Result<u64>,
}

/// How long the timed part took and the cores each process used meanwhile.
pub struct Timed {
    pub elapsed: Duration,
    pub cores: serde_json::Map<String, serde_json::Value>,
}

impl Watch {
    pub fn start(&self) -> Stopwatch<'_> {
        let before = self
            .processes
            .iter()
            .map(|(_, pid)| ticks(&pid.to_string()))
            .collect();
        Stopwatch {
            watch: self,
            before,
            own: ticks("self"),
            started: Instant::now(),
        }
    }
}

impl Stopwatch<'_> {
    pub fn stop(self) -> Timed {
        let elapsed = self.started.elapsed();
        let seconds = elapsed.as_secs_f64() * f64::from(self.watch.clock_ticks);
        let used = |before: &anyhow::Result<u64>, process: &str| match (before, ticks(process)) {
            (Ok(before), Ok(after)) => {
                serde_json::json!(((after - before) as f64 / seconds * 100.0).round() / 100.0)
            }
            // A process that exited meanwhile: say so rather than guess.
            _ => serde_json::Value::Null,
        };
        let mut cores: serde_json::Map<_, _> = self
            .watch
            .processes
            .iter()
            .zip(&self.before)
            .map(|((name, pid), before)| (name.clone(), used(before, &pid.to_string())))
            .collect();
        cores.insert("native-baseline".into(), used(&self.own, "self"));
        Timed { elapsed, cores }
    }
}
