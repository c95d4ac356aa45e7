-- Per-second totals of the stored events, so that the aggregator's cost for
-- a window depends on the window's length, not on how many events it holds.
-- consumer-high updates it in the statement that stores the events (see
-- src/store.rs), from exactly the events that were new, so redeliveries
-- never count twice. A trigger would catch every writer, but TimescaleDB
-- refuses triggers with transition tables on hypertables.
CREATE TABLE events_per_second (
    second     bigint           PRIMARY KEY, -- Unix seconds of the bucket start
    events     bigint           NOT NULL,
    amount_sum double precision NOT NULL,
    amount_min double precision NOT NULL,
    amount_max double precision NOT NULL
);

-- Events stored before this migration.
INSERT INTO events_per_second (second, events, amount_sum, amount_min, amount_max)
SELECT floor(extract(epoch FROM time))::bigint, count(*), sum(amount), min(amount), max(amount)
FROM events
GROUP BY 1;
