//! The one routing rule: which store an event belongs in.

use std::fmt;
use std::str::FromStr;

use serde_json::Value;

use crate::event::{parse_amount, Amount};

/// Where an event is stored: `High` in TimescaleDB, `Low` in InfluxDB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    High,
    Low,
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::High => "high",
            Self::Low => "low",
        }
    }

    /// The route [`Route::as_str`] names.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::High, Self::Low]
            .into_iter()
            .find(|route| route.as_str() == name)
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The amount that splits the two routes (`WATERMARK`, default 5.0).
/// An amount equal to the watermark goes low, as it did in the Go version.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Watermark(f64);

impl Watermark {
    pub const DEFAULT: Self = Self(5.0);

    pub fn new(value: f64) -> Result<Self, WatermarkError> {
        if value.is_finite() {
            Ok(Self(value))
        } else {
            Err(WatermarkError::NotFinite(value))
        }
    }

    pub fn value(self) -> f64 {
        self.0
    }

    pub fn route(self, amount: Amount) -> Route {
        if amount.value() > self.0 {
            Route::High
        } else {
            Route::Low
        }
    }

    /// The route that owns a record which is not a valid event, and so
    /// writes its one dead letter. Both consumer groups read every record;
    /// each must decide alone, from the payload, whether the bad record is
    /// its own. A readable finite amount decides as it would for a valid
    /// event, whatever else is wrong; with none, the record is Low's, the
    /// side of the rule that takes everything not above the watermark.
    pub fn route_invalid(self, payload: &[u8]) -> Route {
        let amount = match serde_json::from_slice::<Value>(payload) {
            Ok(Value::Object(mut fields)) => fields.remove("amount"),
            _ => None,
        };
        amount
            .and_then(|amount| parse_amount(&amount).ok())
            .map_or(Route::Low, |amount| self.route(amount))
    }
}

impl Default for Watermark {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl FromStr for Watermark {
    type Err = WatermarkError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let value: f64 = s
            .trim()
            .parse()
            .map_err(|_| WatermarkError::NotANumber(s.to_owned()))?;
        Self::new(value)
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WatermarkError {
    #[error("watermark must be a finite number, got {0}")]
    NotFinite(f64),
    #[error("watermark {0:?} is not a number")]
    NotANumber(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(amount: f64) -> Route {
        Watermark::DEFAULT.route(Amount::new(amount).unwrap())
    }

    #[test]
    fn boundary_goes_low_and_the_next_float_goes_high() {
        assert_eq!(route(5.0), Route::Low);
        assert_eq!(route(5.0_f64.next_up()), Route::High);
        assert_eq!(route(5.0_f64.next_down()), Route::Low);
        assert_eq!(route(-1.0), Route::Low);
        assert_eq!(route(9.99), Route::High);
    }

    #[test]
    fn each_invalid_record_has_one_owner() {
        let owner = |payload: &str| Watermark::DEFAULT.route_invalid(payload.as_bytes());
        // A readable amount decides, whatever else is wrong.
        assert_eq!(owner(r#"{"amount": 9.5}"#), Route::High);
        assert_eq!(owner(r#"{"amount": "9.5", "time": "soon"}"#), Route::High);
        assert_eq!(owner(r#"{"amount": 1e308, "time": -1}"#), Route::High);
        assert_eq!(owner(r#"{"amount": 5, "id": 7}"#), Route::Low);
        assert_eq!(owner(r#"{"amount": -3}"#), Route::Low);
        // Without one, Low owns it.
        for payload in [
            "",
            "garbage",
            "[9.5]",
            r#"{"time": 1}"#,
            r#"{"amount": "NaN"}"#,
            r#"{"amount": "inf"}"#,
            r#"{"amount": null}"#,
            r#"{"amount": 1e999}"#,
        ] {
            assert_eq!(owner(payload), Route::Low, "{payload}");
        }
    }

    #[test]
    fn parses_and_rejects_watermarks() {
        assert_eq!("7.5".parse::<Watermark>().unwrap().value(), 7.5);
        assert!("NaN".parse::<Watermark>().is_err());
        assert!("five".parse::<Watermark>().is_err());
    }
}
