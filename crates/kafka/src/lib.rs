//! StreamProc's Kafka side. Only standard Kafka protocol features are used,
//! so the same code runs against tansu locally and Apache Kafka in a
//! cluster: [`config`] holds the flags, [`producer`] the acks=all producer
//! and topic setup, [`offsets`] where a topic ends and a group stands, [`reader`] reading a
//! topic outside any group, and
//! [`consume`] the loop both consumers run.

pub mod config;
pub mod consume;
pub mod offsets;
pub mod producer;
pub mod reader;
