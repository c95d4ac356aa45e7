use aggregator::Config;
use clap::Parser;
use streamproc_kit::{shutdown, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    telemetry::init();
    let listener = config.serve.bind(aggregator::DEFAULT_PORT).await?;
    aggregator::run(config, listener, shutdown::on_signal()).await
}
