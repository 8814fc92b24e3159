-- pg_kafka 0.6.0: the batch layout (core/src/storage/batches.rs). A topic stores either a
-- row of kafka.messages per message or a row of kafka.batches per produced record batch,
-- chosen when it is created and fixed for its life. SQL reads both the same way:
-- kafka.topic_messages and kafka.consume() unpack batches into message rows. Part of every
-- fresh install and of the upgrade script from 0.5.0 (with hardening.sql).

-- Topics existing before 0.6.0 are in rows. A topic created later, by a Kafka client or
-- with SQL, gets pg_kafka.default_topic_storage unless it says otherwise.
ALTER TABLE kafka.topics
    ADD COLUMN storage text NOT NULL DEFAULT 'rows' CHECK (storage IN ('rows', 'batches'));
ALTER TABLE kafka.topics
    ALTER COLUMN storage SET DEFAULT coalesce(pg_catalog.current_setting('pg_kafka.default_topic_storage', true), 'rows');
COMMENT ON COLUMN kafka.topics.storage IS
    'rows: a kafka.messages row per message; batches: a kafka.batches row per record batch (fixed at creation)';

-- One record batch (RecordBatch v2) as its producer sent it, with its offsets assigned
-- (base offset written into the bytes). The primary key is the one Fetch walks: the first
-- batch whose last offset is at or after the fetch offset, then on. Like kafka.messages it
-- has no foreign key to kafka.topics (see schema.sql).
CREATE TABLE kafka.batches (
    topic_id        integer     NOT NULL,
    partition       integer     NOT NULL CHECK (partition >= 0),
    base_offset     bigint      NOT NULL CHECK (base_offset >= 0),
    last_offset     bigint      NOT NULL,
    record_count    integer     NOT NULL CHECK (record_count > 0),
    -- The largest record timestamp of the batch (ListOffsets by time, retention.ms).
    max_timestamp   timestamptz NOT NULL,
    -- The idempotent producer that wrote it (-1 when none), as the batch header says.
    producer_id     bigint      NOT NULL,
    producer_epoch  smallint    NOT NULL,
    base_sequence   integer     NOT NULL,
    batch           bytea       NOT NULL,
    CHECK (last_offset = base_offset + record_count - 1),
    PRIMARY KEY (topic_id, partition, last_offset)
);
-- A compressed batch does not compress again: TOAST stores it as it is, out of line.
ALTER TABLE kafka.batches ALTER COLUMN batch SET STORAGE EXTERNAL;
COMMENT ON TABLE kafka.batches IS 'One row per Kafka record batch of topics in the batch layout; written by the pg_kafka worker';
SELECT pg_catalog.pg_extension_config_dump('kafka.batches', '');

-- The records of a stored batch, at their offsets (the core crate's decoder).
-- ROWS: a typical batch's records, for the planner (its default of 1,000 per call makes
-- any query over a few batches look expensive enough to compile with JIT).
CREATE FUNCTION kafka.batch_records(batch bytea)
RETURNS TABLE ("offset" bigint, "timestamp" timestamptz, key bytea, value bytea, headers bytea)
IMMUTABLE STRICT PARALLEL SAFE ROWS 200 LANGUAGE c AS 'MODULE_PATHNAME', 'batch_records_wrapper';

-- The messages of batch-layout topics, shaped like kafka.messages: a batch that the log
-- start offset is inside of (DeleteRecords, as in Kafka) shows only its records from there.
CREATE VIEW kafka.batch_messages AS
SELECT b.topic_id, b.partition, r."offset", r."timestamp", r.key, r.value, r.headers
FROM kafka.batches b
CROSS JOIN LATERAL kafka.batch_records(b.batch) r
WHERE r."offset" >= coalesce((SELECT s.log_start_offset FROM kafka.partition_starts s
                              WHERE s.topic_id = b.topic_id AND s.partition = b.partition), 0);
COMMENT ON VIEW kafka.batch_messages IS 'Messages of batch-layout topics, one row per record, shaped like kafka.messages';

-- A partition's high watermark: the offset the next message will get.
CREATE OR REPLACE FUNCTION kafka.high_watermark(p_topic_id integer, p_partition integer) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT greatest(
        (SELECT max("offset") + 1 FROM kafka.messages WHERE topic_id = p_topic_id AND partition = p_partition),
        (SELECT max(last_offset) + 1 FROM kafka.batches WHERE topic_id = p_topic_id AND partition = p_partition),
        (SELECT log_start_offset FROM kafka.partition_starts WHERE topic_id = p_topic_id AND partition = p_partition),
        0)
$$;

-- A partition's first readable offset: its first stored message, or where
-- DeleteRecords/retention moved it, or (empty) its high watermark.
CREATE OR REPLACE FUNCTION kafka.log_start_offset(p_topic_id integer, p_partition integer) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        greatest(
            (SELECT min("offset") FROM kafka.messages WHERE topic_id = p_topic_id AND partition = p_partition),
            (SELECT min(base_offset) FROM kafka.batches WHERE topic_id = p_topic_id AND partition = p_partition),
            (SELECT log_start_offset FROM kafka.partition_starts WHERE topic_id = p_topic_id AND partition = p_partition)),
        kafka.high_watermark(p_topic_id, p_partition))
$$;

-- Every partition of every topic: its bounds (the worker's, live, where it has them; else
-- read from the table), messages stored, payload bytes (rows: key, value and headers;
-- batches: the batches; summed from the tables, only when selected) and when it was last
-- appended to since the worker started.
CREATE OR REPLACE VIEW kafka.topic_partitions AS
SELECT b.topic,
       b.partition,
       b.log_start_offset,
       b.high_watermark,
       b.high_watermark - b.log_start_offset AS rows,
       ((SELECT coalesce(sum(coalesce(octet_length(m.key), 0) + coalesce(octet_length(m.value), 0) + coalesce(octet_length(m.headers), 0)), 0)
         FROM kafka.messages m WHERE m.topic_id = b.topic_id AND m.partition = b.partition)
        + (SELECT coalesce(sum(octet_length(s.batch)), 0)
           FROM kafka.batches s WHERE s.topic_id = b.topic_id AND s.partition = b.partition))::bigint AS bytes,
       b.last_append_time
FROM (
    SELECT t.id AS topic_id,
           t.name AS topic,
           p AS partition,
           coalesce(f.log_start_offset, kafka.log_start_offset(t.id, p)) AS log_start_offset,
           coalesce(f.high_watermark, kafka.high_watermark(t.id, p)) AS high_watermark,
           f.last_append_time
    FROM kafka.topics t
    CROSS JOIN LATERAL generate_series(0, t.partitions - 1) AS p
    LEFT JOIN kafka.partition_figure_list() f ON f.topic_id = t.id AND f."partition" = p
) b;

-- Every message with its topic's name, headers as JSON, key and value as text and JSON
-- where they are, whatever the topic's layout. Filter on topic, partition and offset to
-- read through the primary keys: each layout joins the topic in its own branch, so a
-- filter on the topic reaches both tables' keys (a batch partition's batches are
-- unpacked, then filtered by offset).
CREATE OR REPLACE VIEW kafka.topic_messages AS
SELECT t.name AS topic,
       m.partition,
       m."offset",
       m."timestamp",
       m.key,
       m.value,
       kafka.try_text(m.key) AS key_text,
       kafka.try_text(m.value) AS value_text,
       kafka.try_jsonb(m.value) AS value_json,
       kafka.headers(m.headers) AS headers
FROM kafka.messages m
JOIN kafka.topics t ON t.id = m.topic_id
UNION ALL
SELECT t.name, b.partition, b."offset", b."timestamp", b.key, b.value,
       kafka.try_text(b.key), kafka.try_text(b.value), kafka.try_jsonb(b.value), kafka.headers(b.headers)
FROM kafka.batch_messages b
JOIN kafka.topics t ON t.id = b.topic_id;

COMMENT ON VIEW kafka.topic_messages IS 'Messages with topic names, decoded headers, and values as text/jsonb where they parse';

-- The next messages of a topic for a consumer group, moving the group's committed
-- offsets in the same transaction: a SQL consumer that commits has consumed them exactly
-- once, one that rolls back gets them again. Sessions consuming one group take turns (the
-- second waits for the first's transaction, then continues after what it took), so no
-- two read the same message. Up to max_messages, taken round robin over the partitions,
-- each partition's in offset order. A group's first call starts at the log start. Kafka
-- consumers of the same group id would move the same offsets: give SQL consumers groups
-- of their own. Either layout: a batch topic's next max_messages batches are unpacked
-- (each holds at least one record), never the whole partition.
CREATE OR REPLACE FUNCTION kafka.consume(group_id text, topic text, max_messages integer DEFAULT 100)
RETURNS TABLE ("partition" integer, "offset" bigint, "timestamp" timestamptz, key bytea, value bytea, headers jsonb)
VOLATILE PARALLEL UNSAFE
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    the_group   text    := consume.group_id;
    the_topic   integer;
    partitions  integer;
BEGIN
    SELECT t.id, t.partitions INTO the_topic, partitions FROM kafka.topics t WHERE t.name = consume.topic;
    IF the_topic IS NULL THEN
        RAISE EXCEPTION 'topic "%" does not exist', consume.topic USING ERRCODE = 'undefined_object';
    END IF;
    IF max_messages IS NULL OR max_messages < 1 THEN
        RAISE EXCEPTION 'max_messages must be positive' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO kafka.consumer_offsets AS o (group_id, topic_id, partition, committed_offset)
    SELECT the_group, the_topic, p, 0 FROM generate_series(0, partitions - 1) AS p
    ON CONFLICT DO NOTHING;
    -- One consumer of the group at a time; a second waits here for this transaction.
    PERFORM 1 FROM kafka.consumer_offsets o
    WHERE o.group_id = the_group AND o.topic_id = the_topic
    ORDER BY o.partition
    FOR UPDATE;
    -- A new statement: in READ COMMITTED it sees what the transaction we waited for did.
    RETURN QUERY
    WITH next AS (
        SELECT o.partition AS p, o.committed_offset AS from_offset
        FROM kafka.consumer_offsets o
        WHERE o.group_id = the_group AND o.topic_id = the_topic AND o.partition < partitions
    ), picked AS (
        SELECT m.partition, m."offset", m."timestamp", m.key, m.value, m.headers,
               row_number() OVER (PARTITION BY m.partition ORDER BY m."offset") AS turn
        FROM next n
        CROSS JOIN LATERAL (
            SELECT u.* FROM (
                (SELECT m.partition, m."offset", m."timestamp", m.key, m.value, m.headers
                 FROM kafka.messages m
                 WHERE m.topic_id = the_topic AND m.partition = n.p AND m."offset" >= n.from_offset
                 ORDER BY m."offset"
                 LIMIT max_messages)
                UNION ALL
                (SELECT b.partition, r."offset", r."timestamp", r.key, r.value, r.headers
                 FROM (SELECT s.partition, s.batch
                       FROM kafka.batches s
                       WHERE s.topic_id = the_topic AND s.partition = n.p AND s.last_offset >= n.from_offset
                       ORDER BY s.last_offset
                       LIMIT max_messages) b
                 CROSS JOIN LATERAL kafka.batch_records(b.batch) r
                 WHERE r."offset" >= n.from_offset
                   AND r."offset" >= coalesce((SELECT ps.log_start_offset FROM kafka.partition_starts ps
                                               WHERE ps.topic_id = the_topic AND ps.partition = n.p), 0))
            ) u
            ORDER BY u."offset"
            LIMIT max_messages
        ) m
    ), chosen AS (
        SELECT * FROM picked ORDER BY turn, partition LIMIT max_messages
    ), moved AS (
        UPDATE kafka.consumer_offsets o
        SET committed_offset = c.next_offset, commit_time = now()
        FROM (SELECT ch.partition AS p, max(ch."offset") + 1 AS next_offset FROM chosen ch GROUP BY ch.partition) c
        WHERE o.group_id = the_group AND o.topic_id = the_topic AND o.partition = c.p
    )
    SELECT c.partition, c."offset", c."timestamp", c.key, c.value, kafka.headers(c.headers)
    FROM chosen c
    ORDER BY c.partition, c."offset";
END
$$;
