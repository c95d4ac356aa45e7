//! The service kit: what every StreamProc service does the same way, apart
//! from Kafka and the stores. A service's `main` parses its flags
//! ([`config`]), starts logging ([`telemetry`]), serves its routes beside
//! the probes and metrics ([`ops`], [`metrics`]) on [`server`] and stops on
//! [`shutdown::signal`].

pub mod auth;
pub mod backoff;
pub mod config;
pub mod error;
pub mod metrics;
pub mod openapi;
pub mod ops;
pub mod server;
pub mod shutdown;
pub mod telemetry;
