-- Per-hour totals of the stored events, so that the aggregator's totals read
-- one row per hour of history instead of one per second: ten years are
-- 87 660 rows instead of up to 315 million, whatever the event rate.
-- consumer-high upserts it in the same statement as events_per_second (see
-- src/store.rs), from exactly the events that were new, so a redelivered
-- event never counts twice here either.
CREATE TABLE events_per_hour (
    hour       bigint           PRIMARY KEY, -- Unix hours: the bucket starts at hour * 3600 s
    events     bigint           NOT NULL,
    amount_sum double precision NOT NULL,
    amount_min double precision NOT NULL,
    amount_max double precision NOT NULL
);

-- Writers that are still running while this migration runs (an instance of
-- the previous release) must not commit seconds that the copy below would
-- miss: SHARE mode waits for their open statements and holds new ones back
-- until this transaction commits.
LOCK TABLE events_per_second IN SHARE MODE;

-- Events stored before this migration, from their per-second totals. Unix
-- seconds are never negative (event times start at the epoch), so integer
-- division is the floor.
INSERT INTO events_per_hour (hour, events, amount_sum, amount_min, amount_max)
SELECT second / 3600, sum(events), sum(amount_sum), min(amount_min), max(amount_max)
FROM events_per_second
GROUP BY 1;
