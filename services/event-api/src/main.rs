use clap::Parser;
use event_api::Config;
use streamproc_kit::{shutdown, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    telemetry::init();
    let listener = config.serve.bind(event_api::DEFAULT_PORT).await?;
    event_api::run(config, listener, shutdown::on_signal()).await
}
