//! Where an event sits in the Kafka log, and an event together with it:
//! what event-api's receipts name, what each store keeps beside the event,
//! and what a dead letter points back to. With it, any stored event can be
//! traced to the one record it came from.

use crate::Event;

/// A record's partition and offset in the events topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogPosition {
    pub partition: i32,
    pub offset: i64,
}

/// A validated event and the record it was read from: what a consumer
/// hands its store.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedEvent {
    pub event: Event,
    pub position: LogPosition,
}
