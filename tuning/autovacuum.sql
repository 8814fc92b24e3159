-- Per-table autovacuum settings for kafka.messages: an append-mostly table that grows
-- by millions of rows, where the defaults (scale factors of 10-20% of the table) mean
-- ever-rarer and ever-larger vacuums as the table grows.
--
--   psql -d postgres -f tuning/autovacuum.sql
ALTER TABLE kafka.messages SET (
    -- Vacuum after every ~1M inserted rows instead of 20% of the table: keeps the
    -- visibility map current (index-only scans for offset lookups) and freezes rows in
    -- small steps, instead of one anti-wraparound vacuum of the whole table later.
    autovacuum_vacuum_insert_threshold = 1000000,
    autovacuum_vacuum_insert_scale_factor = 0.0,
    -- Deletes (retention, DeleteRecords) come in large ranges: clean them up promptly.
    autovacuum_vacuum_scale_factor = 0.02,
    -- Keep planner statistics on the newest offsets fresh.
    autovacuum_analyze_threshold = 1000000,
    autovacuum_analyze_scale_factor = 0.0,
    -- Let vacuum keep up with ingest instead of sleeping on the default cost limit.
    autovacuum_vacuum_cost_delay = 1,
    autovacuum_vacuum_cost_limit = 2000
);
