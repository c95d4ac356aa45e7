//! Clients of StreamProc's two stores: [`timescale`] connects to
//! PostgreSQL/TimescaleDB (consumer-high writes, the aggregator reads),
//! [`influx`] talks to InfluxDB over HTTP, and [`line`] encodes events as
//! the points consumer-low writes.

pub mod influx;
pub mod line;
pub mod timescale;
