use clap::Parser;
use consumer_high::Config;
use streamproc_kit::{shutdown, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    telemetry::init();
    let listener = config.serve.bind(consumer_high::DEFAULT_PORT).await?;
    consumer_high::run(config, listener, shutdown::on_signal()).await
}
