//! The newest dead letters, kept in memory: ordered newest first for the
//! listing, and by key for tracing an event. Bounded by count, and each
//! letter's text by length, so that the memory they take has a ceiling
//! however many or however large the records of the topic are.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use streamproc_event::{EventId, EventTime};
use utoipa::ToSchema;

use crate::stores::Store;

/// Most bytes of a payload kept and shown: every valid event's JSON fits
/// (an id of at most 128 bytes, escaped, a time and an amount), so a dead
/// letter that was an event can be sent back whole.
pub const PAYLOAD_KEPT: usize = 1024;

/// Most bytes kept of a reason or a key.
pub const TEXT_KEPT: usize = 512;

/// Where a dead letter sits in the dead-letter topic, newest last: the
/// time it was dead-lettered, then its partition and offset. Also the
/// listing's cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Order {
    pub time: i64,
    pub partition: i32,
    pub offset: i64,
}

impl Order {
    /// A cursor: digits enough for any time, partition and offset Kafka
    /// gives, and few enough that each fits its type.
    pub const CURSOR_PATTERN: &str = "^[0-9]{1,18}-[0-9]{1,9}-[0-9]{1,18}$";

    /// `<time>-<partition>-<offset>`, as the listing's `before` takes it.
    pub fn cursor(&self) -> String {
        format!("{}-{}-{}", self.time, self.partition, self.offset)
    }

    pub fn parse_cursor(text: &str) -> Option<Self> {
        let mut parts = text.splitn(3, '-');
        let mut next = || {
            parts
                .next()
                .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
        };
        Some(Self {
            time: next()?.parse().ok()?,
            partition: next()?.parse().ok()?,
            offset: next()?.parse().ok()?,
        })
    }
}

/// The record a dead letter was read from, as its headers say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Origin {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// One dead letter as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct DeadLetter {
    /// When it was dead-lettered (the record's timestamp), Unix ms.
    pub time: i64,
    /// Its partition in the dead-letter topic.
    pub partition: i32,
    /// Its offset in that partition.
    pub offset: i64,
    /// The record's key (the event id, for every event event-api wrote),
    /// as UTF-8 with invalid bytes replaced; at most 512 bytes.
    pub key: Option<String>,
    /// Why it was dead-lettered; at most 512 bytes.
    pub reason: String,
    /// The store that refused the event, when a store did; null for a
    /// record that was not a valid event.
    #[schema(required = true)]
    pub refused_by: Option<Store>,
    /// The events-topic record it was, when its headers say.
    pub source: Option<Origin>,
    /// The payload as UTF-8 with invalid bytes replaced; at most 1 024
    /// bytes of it, whole when `truncated` is false.
    pub payload: Option<String>,
    /// The payload's length in bytes.
    pub payload_bytes: usize,
    pub truncated: bool,
}

impl DeadLetter {
    pub fn order(&self) -> Order {
        Order {
            time: self.time,
            partition: self.partition,
            offset: self.offset,
        }
    }
}

/// `bytes` as text of at most `limit` bytes (cut on a character boundary),
/// and whether it was cut.
pub fn bounded_text(bytes: &[u8], limit: usize) -> (String, bool) {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(limit)]);
    let mut text = text.into_owned();
    // Replacement characters take three bytes where one invalid byte was.
    let mut cut = text.len();
    while cut > limit {
        cut -= 1;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
    }
    text.truncate(cut);
    (text, bytes.len() > limit)
}

/// The newest `capacity` dead letters.
#[derive(Debug)]
pub struct Kept {
    capacity: usize,
    letters: BTreeMap<Order, DeadLetter>,
    /// Each key's letters (an event refused, sent back, refused again has
    /// several).
    by_key: HashMap<String, Vec<Order>>,
}

impl Kept {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            letters: BTreeMap::new(),
            by_key: HashMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.letters.len()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Adds `letter`, dropping the oldest past the capacity. Adding one
    /// already kept (read again after a reassignment) changes nothing.
    pub fn add(&mut self, letter: DeadLetter) {
        let order = letter.order();
        if let Some(oldest) = self.letters.keys().next() {
            if self.letters.len() >= self.capacity && order < *oldest {
                return;
            }
        }
        if let Some(key) = &letter.key {
            let orders = self.by_key.entry(key.clone()).or_default();
            if !orders.contains(&order) {
                orders.push(order);
            }
        }
        self.letters.insert(order, letter);
        while self.letters.len() > self.capacity {
            if let Some((_, dropped)) = self.letters.pop_first() {
                self.forget_key(&dropped);
            }
        }
    }

    fn forget_key(&mut self, letter: &DeadLetter) {
        let Some(key) = &letter.key else { return };
        if let Some(orders) = self.by_key.get_mut(key) {
            orders.retain(|o| *o != letter.order());
            if orders.is_empty() {
                self.by_key.remove(key);
            }
        }
    }

    /// Up to `limit` letters older than `before` (all when `None`), newest
    /// first, and whether older ones remain.
    pub fn page(&self, before: Option<Order>, limit: usize) -> (Vec<DeadLetter>, bool) {
        let older = match before {
            Some(before) => self.letters.range(..before),
            None => self.letters.range(..),
        };
        let mut newest_first = older.rev().map(|(_, letter)| letter.clone());
        let page: Vec<DeadLetter> = newest_first.by_ref().take(limit).collect();
        let more = newest_first.next().is_some();
        (page, more)
    }

    /// The letter at `partition`/`offset` of the dead-letter topic.
    pub fn at(&self, partition: i32, offset: i64) -> Option<DeadLetter> {
        self.letters
            .values()
            .find(|l| l.partition == partition && l.offset == offset)
            .cloned()
    }

    /// The letters whose key is `key`, newest first.
    pub fn with_key(&self, key: &str) -> Vec<DeadLetter> {
        let mut found: Vec<DeadLetter> = self
            .by_key
            .get(key)
            .into_iter()
            .flatten()
            .filter_map(|order| self.letters.get(order).cloned())
            .collect();
        found.sort_by_key(|l| std::cmp::Reverse(l.order()));
        found
    }

    /// The events a store refused whose time is in `start..end` (Unix ms),
    /// once per store and id however often they were refused.
    pub fn refused(&self, start: i64, end: i64) -> Vec<RefusedEvent> {
        let mut seen = HashSet::new();
        self.letters
            .values()
            .filter_map(RefusedEvent::of)
            .filter(|refused| (start..end).contains(&refused.time.as_millis()))
            .filter(|refused| seen.insert((refused.store, refused.id.clone())))
            .collect()
    }
}

/// An event a store refused, as its dead letter tells.
#[derive(Debug, Clone, PartialEq)]
pub struct RefusedEvent {
    pub store: Store,
    pub id: EventId,
    pub time: EventTime,
}

impl RefusedEvent {
    /// The event of `letter`, when a store refused it. Its payload is the
    /// event's canonical record, written by the consumer, so only its id
    /// and time are read here.
    fn of(letter: &DeadLetter) -> Option<Self> {
        #[derive(Deserialize)]
        struct Canonical {
            id: String,
            time: i64,
        }
        let store = letter.refused_by?;
        let payload: Canonical = serde_json::from_str(letter.payload.as_deref()?).ok()?;
        Some(Self {
            store,
            id: EventId::parse(&payload.id).ok()?,
            time: EventTime::from_millis(payload.time).ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(time: i64, offset: i64, key: &str) -> DeadLetter {
        DeadLetter {
            time,
            partition: 0,
            offset,
            key: Some(key.to_owned()),
            reason: "not valid JSON".to_owned(),
            refused_by: None,
            source: None,
            payload: None,
            payload_bytes: 0,
            truncated: false,
        }
    }

    #[test]
    fn refused_events_are_read_from_their_letters_once_per_store_and_id() {
        let refused = |offset: i64, store: Option<Store>, payload: &str| DeadLetter {
            refused_by: store,
            payload: Some(payload.to_owned()),
            ..letter(100 + offset, offset, "e")
        };
        let mut kept = Kept::new(10);
        let event = r#"{"id":"e","time":5000,"amount":13.0}"#;
        kept.add(refused(0, Some(Store::TimescaleDb), event));
        // Refused again after it was sent back: still one event.
        kept.add(refused(1, Some(Store::TimescaleDb), event));
        // Not a valid event: no store refused it.
        kept.add(refused(2, None, event));
        kept.add(refused(3, Some(Store::InfluxDb), "not json"));
        kept.add(refused(
            4,
            Some(Store::InfluxDb),
            r#"{"id":"late","time":9000,"amount":1}"#,
        ));
        let found = kept.refused(0, 6000);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].store, Store::TimescaleDb);
        assert_eq!(found[0].id.as_str(), "e");
        assert_eq!(found[0].time.as_millis(), 5000);
        assert_eq!(kept.refused(0, 10_000).len(), 2);
    }

    #[test]
    fn keeps_the_newest_and_forgets_the_keys_of_the_dropped() {
        let mut kept = Kept::new(3);
        for i in 0..5 {
            kept.add(letter(100 + i, i, &format!("k{i}")));
        }
        assert_eq!(kept.len(), 3);
        assert!(kept.with_key("k1").is_empty(), "dropped with its letter");
        assert_eq!(kept.with_key("k4")[0].offset, 4);
        // Read again after a reassignment: nothing changes.
        kept.add(letter(104, 4, "k4"));
        kept.add(letter(100, 0, "k0"));
        assert_eq!(kept.len(), 3);
        assert_eq!(kept.with_key("k4").len(), 1);
        assert!(kept.with_key("k0").is_empty(), "older than all kept");
    }

    #[test]
    fn pages_newest_first_by_cursor_without_gaps_or_repeats() {
        let mut kept = Kept::new(100);
        // Two partitions, interleaved in time; two letters in one ms.
        for i in 0..10 {
            let mut l = letter(1_000 + i / 2, i, "same");
            l.partition = (i % 2) as i32;
            kept.add(l);
        }
        let mut seen = Vec::new();
        let mut before = None;
        loop {
            let (page, more) = kept.page(before, 3);
            seen.extend(page.iter().map(DeadLetter::order));
            if !more {
                break;
            }
            let cursor = page.last().unwrap().order().cursor();
            before = Order::parse_cursor(&cursor);
        }
        let mut expected: Vec<Order> = kept.letters.keys().copied().collect();
        expected.reverse();
        assert_eq!(seen, expected);
        assert_eq!(kept.with_key("same").len(), 10);
        assert!(kept
            .with_key("same")
            .windows(2)
            .all(|w| w[0].order() > w[1].order()));
    }

    #[test]
    fn cursors_read_back_and_nonsense_is_refused() {
        let order = Order {
            time: 1_700_000_000_000,
            partition: 2,
            offset: 17,
        };
        assert_eq!(Order::parse_cursor(&order.cursor()), Some(order));
        for bad in [
            "",
            "1-2",
            "a-1-2",
            "1--2-3",
            "-1-2-3",
            "1-2-99999999999999999999",
        ] {
            assert_eq!(Order::parse_cursor(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn text_is_bounded_on_a_character_boundary() {
        assert_eq!(bounded_text(b"abc", 5), ("abc".to_owned(), false));
        assert_eq!(bounded_text(b"abcdef", 4), ("abcd".to_owned(), true));
        let (text, cut) = bounded_text("aé".as_bytes(), 2);
        assert_eq!((text.as_str(), cut), ("a", true));
        let (text, cut) = bounded_text(&[0xff; 10], 10);
        assert!(text.len() <= 10 && !cut, "{text:?}");
    }
}
