use clap::Parser;
use streamproc_kit::{shutdown, telemetry};
use web_ui::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    telemetry::init();
    let listener = config.serve.bind(web_ui::DEFAULT_PORT).await?;
    web_ui::run(config, listener, shutdown::on_signal()).await
}
