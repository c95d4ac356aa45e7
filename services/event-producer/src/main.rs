use std::process::ExitCode;

use clap::Parser;
use event_producer::Config;
use streamproc_kit::{shutdown, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let config = Config::parse();
    telemetry::init();
    let listener = config.serve.bind(event_producer::DEFAULT_PORT).await?;
    let summary = event_producer::run(config, listener, shutdown::on_signal()).await?;
    // A run that lost events says so in its exit status, for scripts.
    Ok(if summary.lost == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
