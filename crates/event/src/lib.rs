//! StreamProc's event model: what a client may send, the validated [`Event`]
//! every later stage relies on, the one routing rule that picks its store,
//! and the wire format of a batch ([`body`]).
//!
//! No I/O and no async: every service and every fuzz target links it.

pub mod body;
mod event;
mod fields;
pub mod names;
mod position;
mod route;
pub mod schema;

pub use event::{
    Admission, Amount, Defaults, Event, EventBounds, EventError, EventId, EventTime,
    AMOUNT_LIMIT_CEILING, MAX_ID_LEN, MAX_TIME_MS,
};
pub use position::{LogPosition, LoggedEvent};
pub use route::{Route, Watermark, WatermarkError};
