//! native-baseline: what the machine and its broker and stores reach
//! without StreamProc in the way, so that the benchmark scripts can show
//! each service as a ratio of it, measured in the same run. Each subcommand
//! prints one JSON line with its figure; see this crate's README.

mod consume;
mod copy;
mod cpu;
mod events;
mod line;
mod post;
mod produce;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    watch: cpu::Watch,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Produce N events to Kafka with event-api's producer and its delivery
    /// settings, at most K unacknowledged at once. Prints events/s.
    Produce(produce::Args),
    /// Read N records of a topic from the beginning of every partition, as
    /// fast as librdkafka fetches them. Prints records/s.
    Consume(consume::Args),
    /// Binary COPY of N rows shaped like consumer-high's into a fresh table
    /// like its `events` table. Prints rows/s.
    Copy(copy::Args),
    /// Write N points in consumer-low's line protocol to InfluxDB in bulk
    /// requests. Prints points/s.
    Line(line::Args),
    /// Load client for event-api: POST N events over C keep-alive
    /// connections, a fixed number per request. Prints events/s and request
    /// latencies.
    Post(post::Args),
}

// One thread: every subcommand either waits on librdkafka's own threads or
// on the network, and a load client that takes less CPU leaves more of this
// 2-core machine to what it measures.
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    // librdkafka's warnings (and its debug log, with `--set debug=…` and
    // RUST_LOG=debug) on stderr; stdout carries only the figure.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let cli = Cli::parse();
    let watch = &cli.watch;
    let report = match cli.command {
        Command::Produce(args) => produce::run(args, watch).await?,
        Command::Consume(args) => consume::run(args, watch.clone()).await?,
        Command::Copy(args) => copy::run(args, watch).await?,
        Command::Line(args) => line::run(args, watch).await?,
        Command::Post(args) => post::run(args, watch).await?,
    };
    println!("{report}");
    Ok(())
}

/// The one line a subcommand prints: its figure as a rate of `count` items
/// over the timed part, the CPU used meanwhile, and what it was measured
/// with.
fn report(
    baseline: &str,
    unit: &str,
    count: usize,
    timed: cpu::Timed,
    settings: serde_json::Value,
) -> serde_json::Value {
    let seconds = timed.elapsed.as_secs_f64();
    serde_json::json!({
        "baseline": baseline,
        "rate": count as f64 / seconds,
        "unit": unit,
        "count": count,
        "seconds": seconds,
        "cores": timed.cores,
        "settings": settings,
    })
}
