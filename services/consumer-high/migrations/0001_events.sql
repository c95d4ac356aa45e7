-- The Go version's table, plus the event id that makes writes idempotent.
CREATE TABLE events (
    time   timestamptz      NOT NULL,
    amount double precision NOT NULL,
    id     text             NOT NULL
);

-- One row per stored event id. A hypertable's unique indexes must include
-- its time column, and a client that retries without a time gets a new
-- receipt time, so uniqueness by id alone lives in this plain table.
CREATE TABLE event_ids (
    id text PRIMARY KEY
);

-- A hypertable when TimescaleDB is available (its default index on time
-- serves time_bucket queries); a plain table with a time index otherwise,
-- for managed PostgreSQL without the extension. TimescaleDB must be in
-- shared_preload_libraries to be created: without it CREATE EXTENSION fails
-- in a way no exception handler catches, so that is checked first.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')
       AND position('timescaledb' IN current_setting('shared_preload_libraries', true)) > 0
       AND EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') THEN
        CREATE EXTENSION timescaledb;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        PERFORM create_hypertable('events', 'time');
    ELSE
        RAISE NOTICE 'timescaledb is not available: events stays a plain table';
        CREATE INDEX events_time_idx ON events (time DESC);
    END IF;
END
$$;
