use clap::Parser;
use event_api::Config;
use streamproc_kit::{shutdown, telemetry};

// Every request allocates per event (the parsed item, the record, its
// delivery future) and frees it on another thread once Kafka answers;
// glibc's malloc spent about a fifth of event-api's CPU on that under batch
// ingest, mimalloc's thread-local free lists much less.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    telemetry::init();
    let listener = config.serve.bind(event_api::DEFAULT_PORT).await?;
    event_api::run(config, listener, shutdown::on_signal()).await
}
