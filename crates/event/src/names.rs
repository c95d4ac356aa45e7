//! The names the services agree on: topics, consumer groups, tables,
//! measurements, metrics read across services, and ports. Each is written
//! once, here; services and tests import it, and scripts read
//! `scripts/names.env`, which [`env_file`] renders and a test keeps current.
//!
//! Settings may override most of them at run time (`KAFKA_TOPIC`, `PORT`…):
//! these are the defaults every part of the project starts from.

/// The topic that carries the events (`KAFKA_TOPIC`).
pub const EVENTS_TOPIC: &str = "events";
/// Records that are not valid events, or that a store refused
/// (`KAFKA_DLQ_TOPIC`).
pub const DEAD_LETTER_TOPIC: &str = "events.dlq";

/// The dead-letter header naming the route (`high`, `low`) whose store
/// refused the event; absent on records that were not valid events. The
/// aggregator's reconciliation counts a refused event against that store.
pub const REFUSED_ROUTE_HEADER: &str = "streamproc-refused-route";

/// The consumer services, which name their groups after themselves.
pub const CONSUMER_HIGH: &str = "consumer-high";
pub const CONSUMER_LOW: &str = "consumer-low";

/// The consumer group a consumer service joins unless `KAFKA_GROUP_ID`
/// says otherwise: its replicas share it and split the partitions.
pub fn consumer_group(service: &str) -> String {
    format!("streamproc-{service}")
}

/// TimescaleDB: consumer-high's events (its migrations create the table,
/// and the per-second and per-hour totals beside it).
pub const EVENTS_TABLE: &str = "events";

/// InfluxDB: consumer-low's points (field `amount`, the Go version's name),
/// and the totals it keeps beside them.
pub const EVENT_MEASUREMENT: &str = "event";
pub const EVENT_PER_SECOND_MEASUREMENT: &str = "event_1s";
pub const EVENT_PER_HOUR_MEASUREMENT: &str = "event_1h";

/// event-api's counters that the aggregator's pipeline view reads (as
/// registered; Prometheus text adds `_total`).
pub const EVENTS_ACCEPTED_METRIC: &str = "events_accepted";
pub const EVENTS_REJECTED_METRIC: &str = "events_rejected";
/// Every service's request counter, by method, path and status.
pub const HTTP_REQUESTS_METRIC: &str = "http_requests";

/// Each service's port unless `PORT` says otherwise (the Go version's).
pub const AGGREGATOR_PORT: u16 = 9995;
pub const CONSUMER_HIGH_PORT: u16 = 9996;
pub const CONSUMER_LOW_PORT: u16 = 9997;
pub const EVENT_API_PORT: u16 = 9998;
pub const EVENT_PRODUCER_PORT: u16 = 9999;
pub const WEB_UI_PORT: u16 = 8080;

/// `scripts/names.env`: the names above as shell assignments, which
/// `scripts/lib.sh` sources and the Python harnesses read.
pub fn env_file() -> String {
    let names: [(&str, String); 16] = [
        ("EVENTS_TOPIC", EVENTS_TOPIC.into()),
        ("DEAD_LETTER_TOPIC", DEAD_LETTER_TOPIC.into()),
        ("CONSUMER_HIGH_GROUP", consumer_group(CONSUMER_HIGH)),
        ("CONSUMER_LOW_GROUP", consumer_group(CONSUMER_LOW)),
        ("EVENTS_TABLE", EVENTS_TABLE.into()),
        ("EVENT_MEASUREMENT", EVENT_MEASUREMENT.into()),
        (
            "EVENT_PER_SECOND_MEASUREMENT",
            EVENT_PER_SECOND_MEASUREMENT.into(),
        ),
        (
            "EVENT_PER_HOUR_MEASUREMENT",
            EVENT_PER_HOUR_MEASUREMENT.into(),
        ),
        ("DEFAULT_AGGREGATOR_PORT", AGGREGATOR_PORT.to_string()),
        ("DEFAULT_CONSUMER_HIGH_PORT", CONSUMER_HIGH_PORT.to_string()),
        ("DEFAULT_CONSUMER_LOW_PORT", CONSUMER_LOW_PORT.to_string()),
        ("DEFAULT_EVENT_API_PORT", EVENT_API_PORT.to_string()),
        (
            "DEFAULT_EVENT_PRODUCER_PORT",
            EVENT_PRODUCER_PORT.to_string(),
        ),
        ("DEFAULT_WEB_UI_PORT", WEB_UI_PORT.to_string()),
        ("EVENTS_ACCEPTED_METRIC", EVENTS_ACCEPTED_METRIC.into()),
        ("EVENTS_REJECTED_METRIC", EVENTS_REJECTED_METRIC.into()),
    ];
    let mut file = String::from(
        "# shellcheck shell=bash disable=SC2034\n\
         # Generated from crates/event/src/names.rs; do not edit. After changing\n\
         # a name there: UPDATE_NAMES=1 cargo test -p streamproc-event names\n",
    );
    for (key, value) in names {
        file.push_str(&format!("{key}={value}\n"));
    }
    file
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scripts' copy is the code's: rewritten with UPDATE_NAMES=1,
    /// refused when stale.
    #[test]
    fn names_env_file_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/names.env");
        let rendered = env_file();
        if std::env::var_os("UPDATE_NAMES").is_some() {
            std::fs::write(path, &rendered).unwrap();
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert_eq!(
            committed, rendered,
            "scripts/names.env is stale: run UPDATE_NAMES=1 cargo test -p streamproc-event names"
        );
    }
}
