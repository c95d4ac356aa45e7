-- Where each event came from and when it was stored, so that the
-- aggregator can trace any stored event back to its Kafka record
-- (GET /api/v1/events/{id}). Rows stored before this migration keep NULLs:
-- their record is no longer known.
ALTER TABLE events
    ADD COLUMN kafka_partition integer,
    ADD COLUMN kafka_offset    bigint,
    ADD COLUMN stored_at       timestamptz;

-- The event's time beside its id, so that an event is found by id alone:
-- the id's primary key gives the time, and the time lets the events
-- table's time index (and TimescaleDB's chunks) narrow the search to a
-- few rows, where an index on id would have one per chunk to probe.
ALTER TABLE event_ids ADD COLUMN time timestamptz;
