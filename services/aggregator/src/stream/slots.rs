//! The MAX_STREAMS places for open streams. A new stream always gets one:
//! when all are taken, the oldest stream is ended to make room. Refusing
//! instead would let 64 clients that open a stream and never read it lock
//! every page out of live updates for as long as they hold on; ending the
//! oldest costs a legitimate page at most a reconnect, which the page
//! makes by itself and without losing a point.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio_util::sync::CancellationToken;

pub struct StreamSlots {
    max: usize,
    /// Open streams, oldest first, each with the token that ends it.
    open: Mutex<VecDeque<(u64, CancellationToken)>>,
    next_id: AtomicU64,
}

/// One stream's place: it ends the stream when cancelled, and gives the
/// place back when dropped.
pub struct Slot {
    id: u64,
    ended: CancellationToken,
    slots: Arc<StreamSlots>,
}

impl StreamSlots {
    pub fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            open: Mutex::new(VecDeque::new()),
            next_id: AtomicU64::new(0),
        }
    }

    /// A place for a new stream, and whether the oldest was ended for it.
    pub fn open(self: &Arc<Self>) -> (Slot, bool) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let ended = CancellationToken::new();
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let evicted = if open.len() >= self.max {
            open.pop_front()
                .map(|(_, oldest)| oldest.cancel())
                .is_some()
        } else {
            false
        };
        open.push_back((id, ended.clone()));
        let slot = Slot {
            id,
            ended,
            slots: self.clone(),
        };
        (slot, evicted)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl Slot {
    /// Completes when a newer stream took this place.
    pub async fn evicted(&self) {
        self.ended.cancelled().await;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self
            .slots
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        open.retain(|(id, _)| *id != self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_stream_makes_room_and_a_closed_one_gives_its_place_back() {
        let slots = Arc::new(StreamSlots::new(2));
        let (first, evicted) = slots.open();
        assert!(!evicted);
        let (second, _) = slots.open();
        let (third, evicted) = slots.open();
        assert!(evicted);
        assert!(first.ended.is_cancelled(), "the oldest was ended");
        assert!(!second.ended.is_cancelled() && !third.ended.is_cancelled());
        assert_eq!(slots.len(), 2);

        // A stream that ends by itself frees its place: no one is evicted.
        drop(first);
        drop(second);
        assert_eq!(slots.len(), 1);
        let (_fourth, evicted) = slots.open();
        assert!(!evicted);
        assert!(!third.ended.is_cancelled());
    }
}
