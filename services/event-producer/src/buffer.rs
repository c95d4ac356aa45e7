//! The bounded buffer between generating and sending. While event-api is
//! unreachable it fills up; past its capacity the oldest events are dropped
//! (and counted), so memory stays bounded however long the outage lasts.

use std::collections::VecDeque;
use std::sync::Mutex;

use streamproc_event::Event;

pub struct Buffer {
    events: Mutex<VecDeque<Event>>,
    capacity: usize,
}

impl Buffer {
    pub fn new(capacity: usize) -> Self {
        Self {
            events: Mutex::new(VecDeque::with_capacity(capacity.min(65_536))),
            capacity,
        }
    }

    /// Adds an event; returns how many old events were dropped to make room.
    pub fn push(&self, event: Event) -> usize {
        let mut events = self.lock();
        events.push_back(event);
        Self::trim(&mut events, self.capacity)
    }

    /// Takes up to `max` of the oldest events out, to send them.
    pub fn take(&self, max: usize) -> Vec<Event> {
        let mut events = self.lock();
        let n = max.min(events.len());
        events.drain(..n).collect()
    }

    /// Puts a batch that could not be sent back in front, in order; returns
    /// how many events were dropped because the buffer filled meanwhile.
    pub fn put_back(&self, batch: Vec<Event>) -> usize {
        let mut events = self.lock();
        for event in batch.into_iter().rev() {
            events.push_front(event);
        }
        Self::trim(&mut events, self.capacity)
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    fn trim(events: &mut VecDeque<Event>, capacity: usize) -> usize {
        let excess = events.len().saturating_sub(capacity);
        events.drain(..excess);
        excess
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Event>> {
        // A panic while holding the lock cannot leave the queue half-changed.
        self.events.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamproc_event::{Amount, EventId, EventTime};

    fn event(n: u32) -> Event {
        Event::new(
            EventId::parse(&n.to_string()).unwrap(),
            EventTime::from_millis(n.into()).unwrap(),
            Amount::new(n.into()).unwrap(),
        )
    }

    fn ids(events: &[Event]) -> Vec<&str> {
        events.iter().map(|e| e.id.as_str()).collect()
    }

    #[test]
    fn drops_the_oldest_past_capacity() {
        let buffer = Buffer::new(3);
        let dropped: usize = (0..5).map(|n| buffer.push(event(n))).sum();
        assert_eq!(dropped, 2);
        assert_eq!(ids(&buffer.take(10)), ["2", "3", "4"]);
    }

    #[test]
    fn a_failed_batch_goes_back_in_front_in_order() {
        let buffer = Buffer::new(4);
        for n in 0..4 {
            buffer.push(event(n));
        }
        let batch = buffer.take(2);
        buffer.push(event(4));
        buffer.push(event(5));
        assert_eq!(buffer.put_back(batch), 2, "full again: the two oldest go");
        assert_eq!(ids(&buffer.take(10)), ["2", "3", "4", "5"]);
        assert_eq!(buffer.len(), 0);
    }
}
