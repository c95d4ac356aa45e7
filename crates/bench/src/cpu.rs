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

fn parse_watch(value: &str) -> anyhow::Result<(String, u32)> {
    let (name, pid) = value
        .split_once('=')
        .with_context(|| format!("expected NAME=PID, got {value:?}"))?;
    let pid = pid.parse().with_context(|| format!("PID {pid:?}"))?;
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

/// CPU ticks of the whole machine spent on anything but idle and I/O wait:
/// the stores' many processes included, which no single pid shows.
fn machine_busy_ticks() -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .context("an empty /proc/stat")?
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    // user nice system idle iowait irq softirq steal
    let (idle, iowait) = (fields.get(3).copied(), fields.get(4).copied());
    let (Some(idle), Some(iowait)) = (idle, iowait) else {
        anyhow::bail!("a short cpu line in /proc/stat");
    };
    Ok(fields.iter().sum::<u64>() - idle - iowait)
}

pub struct Stopwatch<'a> {
    watch: &'a Watch,
    started: Instant,
    before: Vec<anyhow::Result<u64>>,
    own: anyhow::Result<u64>,
    machine: anyhow::Result<u64>,
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
            machine: machine_busy_ticks(),
            started: Instant::now(),
        }
    }
}

impl Stopwatch<'_> {
    pub fn stop(self) -> Timed {
        let elapsed = self.started.elapsed();
        let seconds = elapsed.as_secs_f64() * f64::from(self.watch.clock_ticks);
        let share = |before: &anyhow::Result<u64>, after: anyhow::Result<u64>| match (before, after)
        {
            (Ok(before), Ok(after)) => {
                serde_json::json!(
                    (after.saturating_sub(*before) as f64 / seconds * 100.0).round() / 100.0
                )
            }
            // A process that exited meanwhile: say so rather than guess.
            _ => serde_json::Value::Null,
        };
        let used = |before: &anyhow::Result<u64>, process: &str| share(before, ticks(process));
        let mut cores: serde_json::Map<_, _> = self
            .watch
            .processes
            .iter()
            .zip(&self.before)
            .map(|((name, pid), before)| (name.clone(), used(before, &pid.to_string())))
            .collect();
        cores.insert("native-baseline".into(), used(&self.own, "self"));
        cores.insert("machine".into(), share(&self.machine, machine_busy_ticks()));
        Timed { elapsed, cores }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_takes_name_equals_pid() {
        assert_eq!(parse_watch("tansu=42").unwrap(), ("tansu".into(), 42));
        assert!(parse_watch("tansu").is_err());
        assert!(parse_watch("tansu=x").is_err());
    }

    #[test]
    fn this_process_and_the_machine_have_cpu_counters() {
        ticks("self").unwrap();
        machine_busy_ticks().unwrap();
    }
}
