//! Shared building blocks of the StreamProc services.
//!
//! Each service binary is a thin wiring of these modules: parse its
//! configuration, build its state, serve its routes next to [`ops`], and stop
//! on [`shutdown::signal`].

pub mod auth;
pub mod backoff;
pub mod config;
pub mod consume;
pub mod event;
pub mod influx;
pub mod kafka;
pub mod metrics;
pub mod offsets;
pub mod ops;
pub mod route;
pub mod shutdown;
pub mod telemetry;
pub mod timescale;

pub use event::{Admission, Amount, Event, EventBounds, EventId, EventTime};
pub use route::{Route, Watermark};
