use clap::Parser;
use consumer_high::Config;
use streamproc_kit::{shutdown, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    telemetry::init();
    if let Some(from) = config.consumer.rebuild_from {
        // A one-off job: no port, no probes; the running consumers go on.
        let summary = consumer_high::rebuild(config, from, shutdown::on_signal()).await?;
        println!("{summary}");
        return Ok(());
    }
    let listener = config.serve.bind(consumer_high::DEFAULT_PORT).await?;
    consumer_high::run(config, listener, shutdown::on_signal()).await
}
