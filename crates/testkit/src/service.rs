use std::future::Future;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A StreamProc service running in the test's own process, on a free port,
/// through the same `run(config, listener, shutdown)` its binary calls.
pub struct InProcess {
    pub url: String,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl InProcess {
    pub async fn spawn<F, Fut>(run: F) -> Self
    where
        F: FnOnce(TcpListener, CancellationToken) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        streamproc::telemetry::init_for_tests();
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let url = format!("http://{}", listener.local_addr().expect("bound address"));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(listener, shutdown.clone()));
        Self {
            url,
            shutdown,
            task,
        }
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        reqwest::get(format!("{}{path}", self.url))
            .await
            .expect("the service answers")
    }

    /// The value of an unlabelled metric from `/metrics`; 0 when absent.
    pub async fn metric(&self, name: &str) -> f64 {
        let text = self.get("/metrics").await.text().await.unwrap_or_default();
        text.lines()
            .find_map(|line| {
                line.strip_prefix(name)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0.0)
    }

    /// Cancels the service's shutdown token and waits for a clean exit.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task
            .await
            .expect("the service task did not panic")
            .expect("the service stopped cleanly");
    }
}
