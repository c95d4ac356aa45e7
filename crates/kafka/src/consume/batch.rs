//! Gathering one batch from the topic: decode, validate, route, and note the
//! offsets to commit once the batch is stored.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{ConsumerContext, StreamConsumer};
use rdkafka::message::BorrowedMessage;
use rdkafka::Message;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::dead_letter::DeadLetter;
use super::{ConsumerMetrics, ConsumerSettings};
use streamproc_event::{Admission, Event, EventBounds, EventTime, LogPosition, LoggedEvent, Route};

/// Records read since the last commit, sorted by what happens to them.
#[derive(Debug)]
pub struct Batch {
    topic: String,
    /// This consumer's events, to write to its sink, each with the record
    /// it came from.
    pub events: Vec<LoggedEvent>,
    /// The other route's valid events: not stored here, but recorded in
    /// the ledger of accepted events by a sink that keeps it (see
    /// [`Sink::record_accepted`](super::Sink::record_accepted)).
    pub others: Vec<LoggedEvent>,
    /// Records that are not valid events, for the dead-letter topic.
    pub dead: Vec<DeadLetter>,
    /// The offset after the last record read, per partition.
    next_offsets: BTreeMap<i32, i64>,
    records: usize,
    admission: Admission,
    /// The route this consumer stores, named in the dead letters of the
    /// events its store refuses.
    route: Route,
}

impl Batch {
    fn new(topic: &str, bounds: &EventBounds, route: Route) -> Self {
        Self {
            topic: topic.to_owned(),
            events: Vec::new(),
            others: Vec::new(),
            dead: Vec::new(),
            next_offsets: BTreeMap::new(),
            records: 0,
            admission: bounds.now(),
            route,
        }
    }

    /// A batch of no records, for a loop that reads no further.
    pub fn empty(settings: &ConsumerSettings) -> Self {
        Self::new(&settings.topic, &settings.bounds, settings.route)
    }

    pub fn is_empty(&self) -> bool {
        self.next_offsets.is_empty()
    }

    /// Records read, whatever became of them.
    pub fn records(&self) -> usize {
        self.records
    }

    fn add(
        &mut self,
        message: &BorrowedMessage<'_>,
        settings: &ConsumerSettings,
        metrics: &ConsumerMetrics,
    ) {
        metrics.consumed.inc();
        if let Some(created_ms) = message.timestamp().to_millis() {
            let waited_ms = EventTime::now()
                .as_millis()
                .saturating_sub(created_ms)
                .max(0);
            metrics
                .record_wait_seconds
                .observe(waited_ms as f64 / 1000.0);
        }
        self.records += 1;
        let source = LogPosition {
            partition: message.partition(),
            offset: message.offset(),
        };
        let next = self.next_offsets.entry(source.partition).or_insert(0);
        *next = (*next).max(source.offset + 1);
        let payload = message.payload().unwrap_or_default();
        match Event::from_json_bytes(payload, &self.admission) {
            Ok(event) if settings.watermark.route(event.amount) == settings.route => {
                self.events.push(LoggedEvent {
                    event,
                    position: source,
                });
            }
            Ok(event) => {
                metrics.skipped.inc();
                self.others.push(LoggedEvent {
                    event,
                    position: source,
                });
            }
            Err(_) if settings.watermark.route_invalid(payload) != settings.route => {
                // The other group dead-letters it: one dead letter per record.
                metrics.skipped.inc();
            }
            Err(error) => {
                tracing::warn!(
                    topic = %self.topic,
                    partition = source.partition,
                    offset = source.offset,
                    error = %error,
                    "record is not a valid event; dead-lettering it"
                );
                self.dead.push(DeadLetter {
                    source_topic: self.topic.clone(),
                    source,
                    key: message.key().map(<[u8]>::to_vec),
                    payload: message.payload().map(<[u8]>::to_vec),
                    reason: error.to_string(),
                    refused_by: None,
                });
            }
        }
    }

    /// The event at `index` as a dead letter, when the store refused it.
    pub fn rejected(&self, index: usize, reason: &str) -> DeadLetter {
        let LoggedEvent { event, position } = &self.events[index];
        DeadLetter {
            source_topic: self.topic.clone(),
            source: *position,
            key: Some(event.id.as_str().as_bytes().to_vec()),
            payload: Some(event.to_json_bytes()),
            reason: format!("rejected by the store: {reason}"),
            refused_by: Some(self.route),
        }
    }

    /// Per partition, the offset after the last record read: what the
    /// commit will say.
    pub fn next_offsets(&self) -> &BTreeMap<i32, i64> {
        &self.next_offsets
    }
}

#[cfg(test)]
impl Batch {
    /// A batch as if read from partition 0 of `topic`: `events` at offsets
    /// 0, 1, …, then `dead`, records that were not valid events.
    pub fn for_tests(topic: &str, events: Vec<Event>, dead: Vec<DeadLetter>) -> Self {
        let mut batch = Self::new(topic, &EventBounds::default(), Route::High);
        batch.records = events.len() + dead.len();
        batch.next_offsets.insert(0, batch.records as i64);
        batch.events = (0..)
            .zip(events)
            .map(|(offset, event)| LoggedEvent {
                event,
                position: LogPosition {
                    partition: 0,
                    offset,
                },
            })
            .collect();
        batch.dead = dead;
        batch
    }
}

/// Once a batch has records, how long it waits for the next before it is
/// written. Records of one fetch reach the queue together, so this only
/// ends a batch when the broker has nothing more in hand: under load the
/// batch grows while the previous one is written, idle it goes out at once.
const NEXT_RECORD_WAIT: Duration = Duration::from_millis(1);

/// Waits for a first record, then reads the records that follow it without
/// a pause, until the batch is full, `batch_max_age` has passed since its
/// first record, or shutdown begins.
pub async fn gather<C: ConsumerContext + 'static>(
    consumer: &StreamConsumer<C>,
    settings: &ConsumerSettings,
    metrics: &ConsumerMetrics,
    shutdown: &CancellationToken,
) -> Batch {
    let mut batch = Batch::empty(settings);
    let mut deadline: Option<Instant> = None;
    while batch.records < settings.batch_max_events {
        let wait = match deadline {
            None => None,
            Some(at) => match at.checked_duration_since(Instant::now()) {
                Some(left) => Some(left.min(NEXT_RECORD_WAIT)),
                None => break,
            },
        };
        let next = async {
            match wait {
                Some(wait) => tokio::time::timeout(wait, consumer.recv()).await.ok(),
                None => Some(consumer.recv().await),
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => break,
            received = next => match received {
                None => break,
                Some(Ok(message)) => {
                    deadline.get_or_insert_with(|| Instant::now() + settings.batch_max_age);
                    batch.add(&message, settings, metrics);
                }
                Some(Err(error)) => {
                    tracing::warn!(error = %error, "kafka fetch failed");
                    if !batch.is_empty() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            },
        }
    }
    batch
}
