-- pg_kafka storage schema.
--
-- Offsets are assigned by the background worker's group-commit writer from an
-- in-memory per-partition counter, never by sequences or max()+1 queries, so
-- the table has no default for "offset". The primary key is the index every
-- read path uses: (topic_id, partition, "offset").

CREATE SCHEMA IF NOT EXISTS kafka;

CREATE TABLE kafka.topics (
    id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE
                CHECK (name ~ '^[a-zA-Z0-9._-]{1,249}$' AND name NOT IN ('.', '..')),
    -- Kafka topic id (Metadata v10+, Fetch v13+): stable for the topic's life.
    topic_uuid  uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    partitions  integer NOT NULL CHECK (partitions BETWEEN 1 AND 100000),
    created_at  timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE kafka.topics IS 'Kafka topics served by pg_kafka';

-- topic_id deliberately has no foreign key: its per-row RI trigger took about
-- 40% of the group-commit writer's time (measured with perf under `make bench`).
-- The writer only writes rows for topics it has looked up, and deleting a topic
-- deletes its rows explicitly.
CREATE TABLE kafka.messages (
    topic_id    integer NOT NULL,
    partition   integer NOT NULL CHECK (partition >= 0),
    "offset"    bigint  NOT NULL CHECK ("offset" >= 0),
    -- The record's Kafka timestamp (CreateTime), exact to the millisecond.
    "timestamp" timestamptz NOT NULL,
    key         bytea,
    value       bytea,
    -- Record headers in Kafka's own record encoding (varint count, then
    -- key/value pairs), NULL when there are none. Kept as one value so the
    -- group-commit writer can pass it through a single unnest() array and
    -- Fetch can copy it back untouched.
    headers     bytea,
    PRIMARY KEY (topic_id, partition, "offset")
);

COMMENT ON TABLE kafka.messages IS 'One row per Kafka record; offsets are written by the pg_kafka worker';
