//! An event's three fields read straight from its JSON text, without the
//! map of every key that a `serde_json::Value` object would build: the
//! per-item cost of a large batch (event-api) and of every record a
//! consumer decodes.
//!
//! Only an object whose keys are each given once is read this way. Anything
//! else (not an object, a field given twice, not JSON) is left to
//! [`Event::from_json`](crate::Event::from_json) on the whole value, so that
//! every error keeps its words and an object with a repeated key keeps the
//! meaning it has always had (the last value wins).

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

/// Each field as sent: `Some(Value::Null)` for `null`, `None` when absent.
pub(crate) struct Fields {
    pub id: Option<Value>,
    pub time: Option<Value>,
    pub amount: Option<Value>,
}

impl Fields {
    /// The fields of `json`, or `None` when it must be read as a whole
    /// value instead (see the module comment).
    pub fn read(json: &[u8]) -> Option<Self> {
        let mut deserializer = serde_json::Deserializer::from_slice(json);
        let fields = deserializer.deserialize_map(FieldsVisitor).ok()?;
        deserializer.end().ok()?;
        Some(fields)
    }
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum Key {
    Id,
    Time,
    Amount,
    #[serde(other)]
    Other,
}

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an event object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
        let mut fields = Fields {
            id: None,
            time: None,
            amount: None,
        };
        while let Some(key) = map.next_key::<Key>()? {
            let slot = match key {
                Key::Id => &mut fields.id,
                Key::Time => &mut fields.time,
                Key::Amount => &mut fields.amount,
                Key::Other => {
                    // Read as a value, not skipped: serde_json skips a
                    // number such as 1e400 that it refuses as a value, and
                    // the answer must be the whole value's (found by the
                    // event_decode fuzz target).
                    map.next_value::<Value>()?;
                    continue;
                }
            };
            if slot.is_some() {
                return Err(de::Error::custom("a field given twice"));
            }
            *slot = Some(map.next_value()?);
        }
        Ok(fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_object_with_each_field_once_is_read_by_fields() {
        let fields = Fields::read(br#"{"amount":2,"id":null,"x":[1,{"y":2}],"x":3}"#).unwrap();
        assert_eq!(fields.amount, Some(Value::from(2)));
        assert_eq!(fields.id, Some(Value::Null), "null is not absent");
        assert_eq!(fields.time, None);
        let escaped = Fields::read(br#"{"am\u006fu\u006et":1.5}"#).unwrap();
        assert_eq!(escaped.amount, Some(Value::from(1.5)), "keys are unescaped");
        for whole in [
            &br#"{"amount":1,"amount":2}"#[..],
            br#"["id", 1700000000000, 2]"#,
            b"7",
            br#"{"amount":1} x"#,
            br#"{"amount":"#,
        ] {
            assert!(
                Fields::read(whole).is_none(),
                "{}",
                String::from_utf8_lossy(whole)
            );
        }
    }
}
