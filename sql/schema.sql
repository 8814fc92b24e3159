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

-- A partition's log start offset once DeleteRecords or retention has moved it past
-- rows that are gone. Without it an emptied partition would look like offset 0 again
-- and offsets would be reused. Absent row: the log starts at the first stored row.
CREATE TABLE kafka.partition_starts (
    topic_id          integer NOT NULL REFERENCES kafka.topics (id) ON DELETE CASCADE,
    partition         integer NOT NULL CHECK (partition >= 0),
    log_start_offset  bigint  NOT NULL CHECK (log_start_offset >= 0),
    PRIMARY KEY (topic_id, partition)
);

-- Topic configs set through CreateTopics, AlterConfigs or IncrementalAlterConfigs.
-- Every key set is stored (validated as Kafka validates it); unset keys read as their defaults.
CREATE TABLE kafka.topic_configs (
    topic_id  integer NOT NULL REFERENCES kafka.topics (id) ON DELETE CASCADE,
    name      text    NOT NULL,
    value     text    NOT NULL,
    PRIMARY KEY (topic_id, name)
);

-- Consumer group offsets (OffsetCommit / OffsetFetch). Group membership itself is
-- kept in the worker's memory; these rows survive restarts.
CREATE TABLE kafka.consumer_offsets (
    group_id          text    NOT NULL,
    topic_id          integer NOT NULL REFERENCES kafka.topics (id) ON DELETE CASCADE,
    partition         integer NOT NULL CHECK (partition >= 0),
    committed_offset  bigint  NOT NULL,
    leader_epoch      integer NOT NULL DEFAULT -1,
    metadata          text,
    commit_time       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, topic_id, partition)
);

COMMENT ON TABLE kafka.consumer_offsets IS 'Committed consumer group offsets';

-- Idempotent producer ids (InitProducerId). A sequence never hands a value out twice,
-- even across rollbacks and crashes, so a restarted broker cannot reuse an id.
CREATE SEQUENCE kafka.producer_ids AS bigint MINVALUE 1;

-- Per (producer id, partition): the epoch and the last five batches appended, as rows
-- of [first sequence, last sequence, base offset]. Written by the group-commit writer in
-- the same transaction as the messages they describe.
CREATE TABLE kafka.producer_state (
    producer_id     bigint   NOT NULL,
    topic_id        integer  NOT NULL REFERENCES kafka.topics (id) ON DELETE CASCADE,
    partition       integer  NOT NULL CHECK (partition >= 0),
    producer_epoch  smallint NOT NULL,
    recent_batches  bigint[] NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (producer_id, topic_id, partition)
);

-- A partition's high watermark: the offset the next message will get.
CREATE FUNCTION kafka.high_watermark(p_topic_id integer, p_partition integer) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT greatest(
        (SELECT max("offset") + 1 FROM kafka.messages WHERE topic_id = p_topic_id AND partition = p_partition),
        (SELECT log_start_offset FROM kafka.partition_starts WHERE topic_id = p_topic_id AND partition = p_partition),
        0)
$$;

-- Each group's lag per partition it has committed: high watermark minus committed offset.
CREATE VIEW kafka.consumer_lag AS
SELECT o.group_id,
       t.name AS topic,
       o.partition,
       o.committed_offset,
       kafka.high_watermark(o.topic_id, o.partition) AS high_watermark,
       greatest(kafka.high_watermark(o.topic_id, o.partition) - o.committed_offset, 0) AS lag,
       o.commit_time
FROM kafka.consumer_offsets o
JOIN kafka.topics t ON t.id = o.topic_id;

COMMENT ON VIEW kafka.consumer_lag IS 'Consumer group lag per partition (high watermark minus committed offset)';

-- pg_dump dumps the contents of these tables and sequences, not only CREATE EXTENSION:
-- without this, a dump and restore of the database would silently lose every topic,
-- message, committed offset and producer id.
SELECT pg_catalog.pg_extension_config_dump('kafka.topics', '');
SELECT pg_catalog.pg_extension_config_dump('kafka.topics_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('kafka.messages', '');
SELECT pg_catalog.pg_extension_config_dump('kafka.partition_starts', '');
SELECT pg_catalog.pg_extension_config_dump('kafka.topic_configs', '');
SELECT pg_catalog.pg_extension_config_dump('kafka.consumer_offsets', '');
SELECT pg_catalog.pg_extension_config_dump('kafka.producer_ids', '');
SELECT pg_catalog.pg_extension_config_dump('kafka.producer_state', '');
