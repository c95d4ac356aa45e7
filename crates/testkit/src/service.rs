use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A StreamProc service running in the test's own process, on a free port,
/// through the same `run(config, listener, shutdown)` its binary calls.
pub struct InProcess {
    pub url: String,
    address: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl InProcess {
    pub async fn spawn<F, Fut>(run: F) -> Self
    where
        F: FnOnce(TcpListener, CancellationToken) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        Self::spawn_at(SocketAddr::from(([127, 0, 0, 1], 0)), run).await
    }

    /// Stops this service cleanly and runs `run` in its place, on the same
    /// address, so that peers given its URL reach the new one.
    pub async fn restart<F, Fut>(self, run: F) -> Self
    where
        F: FnOnce(TcpListener, CancellationToken) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let address = self.address;
        self.stop().await;
        Self::spawn_at(address, run).await
    }

    async fn spawn_at<F, Fut>(address: SocketAddr, run: F) -> Self
    where
        F: FnOnce(TcpListener, CancellationToken) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        streamproc_kit::telemetry::init_for_tests();
        let listener = TcpListener::bind(address).await.expect("a loopback port");
        let address = listener.local_addr().expect("bound address");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(listener, shutdown.clone()));
        Self {
            url: format!("http://{address}"),
            address,
            shutdown,
            task,
        }
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        reqwest::get(format!("{}{path}", self.url))
            .await
            .expect("the service answers")
    }

    /// The value of one series from `/metrics`, named as Prometheus text
    /// writes it (`events_written_total`, or with its labels:
    /// `store_query_failures_total{store="influxdb"}`); 0 when absent.
    pub async fn metric(&self, name: &str) -> f64 {
        let text = self.get("/metrics").await.text().await.unwrap_or_default();
        let (wanted, labels) = match name.split_once('{') {
            Some((wanted, labels)) => (wanted, labels.trim_end_matches('}')),
            None => (name, ""),
        };
        let value = streamproc_kit::metrics::samples(&text)
            .find(|sample| sample.name == wanted && sample.labels == labels)
            .map_or(0.0, |sample| sample.value);
        value
    }

    /// The dead letters of this consumer, read from `events.dlq` on
    /// `brokers` once its metrics count `expected` of them (the topic is
    /// created with the first one); panics if they do not come in 30 s.
    pub async fn dead_letters(&self, brokers: &str, expected: usize) -> Vec<crate::Record> {
        let counted = crate::eventually(Duration::from_secs(30), || async {
            self.metric("events_dead_lettered_total").await >= expected as f64
        })
        .await;
        assert!(counted, "{expected} records were not dead-lettered in 30 s");
        crate::read_topic(
            brokers,
            streamproc_event::names::DEAD_LETTER_TOPIC,
            expected,
            Duration::from_secs(20),
            Duration::from_millis(500),
        )
        .await
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

/// Produces `round(0)`, `round(1)`, … to `topic` until every consumer in
/// `members` has written events: a consumer group needs a moment to
/// rebalance onto a new member. Every record of a round must be an event
/// these members store. After each round it waits until the members have
/// written every event produced so far, so each check sees the round's
/// effect however slow the machine; only then, while some member is still
/// idle, it pauses briefly (a poll interval, so rounds do not pile up during
/// the rebalance) and produces the next. The number of rounds produced;
/// panics after 45 s.
pub async fn produce_until_all_busy(
    brokers: &str,
    topic: &str,
    members: &[&InProcess],
    mut round: impl FnMut(usize) -> Vec<(String, Vec<u8>)>,
) -> usize {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(45);
    let mut produced = 0;
    for rounds in 1.. {
        let records = round(rounds - 1);
        produced += records.len();
        crate::produce(brokers, topic, &records).await;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let written = crate::eventually(left, || async {
            let mut written = 0.0;
            for member in members {
                written += member.metric("events_written_total").await;
            }
            // A redelivered event is written again: at least, not exactly.
            written >= produced as f64
        })
        .await;
        assert!(
            written,
            "the {produced} events produced were not written within 45 s"
        );
        let mut busy = true;
        for member in members {
            busy &= member.metric("events_written_total").await > 0.0;
        }
        if busy {
            return rounds;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not every consumer got partitions within 45 s"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    unreachable!("the loop returns or panics")
}
