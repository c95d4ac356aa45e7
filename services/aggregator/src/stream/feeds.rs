//! One query loop per distinct `(step, last)` that open streams ask for,
//! shared by all of them: any number of pages on the default chart cost
//! the stores one query of each per event, not one per page. A feed starts
//! with its first stream and stops once its last stream has ended.

use std::collections::HashMap;
use std::pin::pin;
use std::sync::{Arc, Mutex, PoisonError};

use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::time::Duration;

use streamproc_event::EventTime;
use streamproc_grid::Grid;

use super::due_times;
use super::wakes::Wakes;
use crate::answers::SeriesBody;
use crate::stores::Stores;

/// What a feed sends each stream, made once for all of them.
pub enum Update {
    /// The `/api/v1/series` JSON of the newest buckets.
    Series(String),
    /// Why there are none (a clock past 2100).
    Error(String),
}

/// The newest update of one feed; `None` until its first query answered.
pub type Latest = watch::Receiver<Option<Arc<Update>>>;

type Key = (i64, i64);

pub struct Feeds {
    open: Mutex<HashMap<Key, watch::Sender<Option<Arc<Update>>>>>,
    interval: Duration,
    min_gap: Duration,
    wakes: Wakes,
}

impl Feeds {
    /// Feeds that send at least every `interval`, on a consumer's wake
    /// sooner, but never two updates within `min_gap`.
    pub fn new(interval: Duration, min_gap: Duration, wakes: Wakes) -> Arc<Self> {
        Arc::new(Self {
            open: Mutex::new(HashMap::new()),
            interval,
            min_gap,
            wakes,
        })
    }

    /// The feed of the last `last` buckets of `step`, started if none is.
    pub fn subscribe(self: &Arc<Self>, stores: &Arc<Stores>, step: i64, last: i64) -> Latest {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(feed) = open.get(&(step, last)) {
            return feed.subscribe();
        }
        let (feed, latest) = watch::channel(None);
        open.insert((step, last), feed.clone());
        tokio::spawn(self.clone().run((step, last), feed, stores.clone()));
        latest
    }

    async fn run(
        self: Arc<Self>,
        key: Key,
        feed: watch::Sender<Option<Arc<Update>>>,
        stores: Arc<Stores>,
    ) {
        let (step, last) = key;
        let mut due = pin!(due_times(self.interval, self.min_gap, self.wakes.clone()));
        loop {
            tokio::select! {
                // Checked first: a feed whose streams all ended stops
                // before its next query, even while updates are due.
                biased;
                () = feed.closed() => {
                    // Under the lock a new stream subscribes, so the count
                    // read under it is final.
                    let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
                    if feed.receiver_count() == 0 {
                        open.remove(&key);
                        return;
                    }
                }
                Some(()) = due.next() => {
                    let update = query(&stores, step, last).await;
                    feed.send_replace(Some(Arc::new(update)));
                }
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

async fn query(stores: &Stores, step: i64, last: i64) -> Update {
    // Checked before streaming; only a clock that jumps past 2100 could
    // fail it now, and that is said, not panicked.
    match Grid::latest(EventTime::now().as_millis(), step, last) {
        Ok(grid) => match serde_json::to_string(&SeriesBody::query(stores, &grid).await) {
            Ok(json) => Update::Series(json),
            Err(error) => Update::Error(error.to_string()),
        },
        Err(error) => Update::Error(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stores::{InfluxReader, QueryMetrics, TimescaleReader};
    use clap::Parser;
    use streamproc_kit::metrics::Registry;

    /// Stores nothing listens at: each query answers at once, "unavailable".
    fn unreachable_stores() -> Arc<Stores> {
        let config = crate::Config::try_parse_from([
            "aggregator",
            "--postgres-url",
            "postgres://postgres@127.0.0.1:1/streamproc",
            "--influxdb-host",
            "http://127.0.0.1:1",
        ])
        .unwrap();
        Arc::new(Stores::new(
            TimescaleReader::new(&config.postgres).unwrap(),
            InfluxReader::new(config.influx.clone()).unwrap(),
            Duration::from_millis(200),
            QueryMetrics::register(&mut Registry::default()),
        ))
    }

    #[tokio::test]
    async fn streams_of_one_grid_share_a_feed_that_ends_with_the_last() {
        let stores = unreachable_stores();
        let (_consumers, wakes) = watch::channel(());
        let feeds = Feeds::new(Duration::from_millis(20), Duration::from_millis(5), wakes);
        let mut first = feeds.subscribe(&stores, 1_000, 60);
        let second = feeds.subscribe(&stores, 1_000, 60);
        let other = feeds.subscribe(&stores, 10_000, 3);
        assert_eq!(feeds.len(), 2, "one feed per grid");

        first.changed().await.unwrap();
        assert!(matches!(
            first.borrow().as_deref(),
            Some(Update::Series(json)) if json.contains(r#""available":false"#)
        ));
        assert!(
            second.has_changed().unwrap(),
            "the second stream got the same update"
        );

        // A feed ends once the query in hand has answered (at most the
        // stores' 200 ms timeout here).
        drop((first, second, other));
        for _ in 0..250 {
            if feeds.len() == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the feeds outlived their streams");
    }
}
