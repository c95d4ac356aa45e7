-- The ledger of accepted events: every valid event read from the topic,
-- both routes', once per id, counted per second of event time. The
-- aggregator's reconciliation (GET /api/v1/reconcile) compares both stores
-- against it. consumer-high keeps it because it reads every record anyway
-- and already writes to a transactional store that can deduplicate ids;
-- see docs/guarantees.md ("Reconciliation") for why not offsets or the log.
--
-- It is written in a statement of its own, before the events (see
-- src/store.rs): an event the store refuses is still accepted, and is
-- then accounted for by its dead letter.
CREATE TABLE accepted_ids (
    id text PRIMARY KEY
);

CREATE TABLE accepted_per_second (
    second bigint PRIMARY KEY, -- Unix seconds of the bucket start
    high   bigint NOT NULL,    -- events routed to TimescaleDB
    low    bigint NOT NULL     -- events routed to InfluxDB
);

-- Not filled from what is stored already: the events of InfluxDB's route
-- were never kept here. `consumer-high --rebuild-from beginning` records
-- the whole topic, both routes.
