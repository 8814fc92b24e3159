-- pg_kafka 0.9.0: transactions on row-layout topics (core/src/storage/reads.rs,
-- core/src/writer/group_commit.rs). Part of every fresh install and of the upgrade script
-- from 0.8.0 (with hardening.sql).

-- A row written by a transactional producer carries it (id and epoch), and a transaction's
-- end marker is a row of its own (control: its key and value are Kafka's control record).
-- NULL outside transactions: adding them rewrites nothing, and an ordinary row stores
-- three bits of its null bitmap more.
ALTER TABLE kafka.messages
    ADD COLUMN producer_id    bigint,
    ADD COLUMN producer_epoch smallint,
    ADD COLUMN control        boolean;

COMMENT ON COLUMN kafka.messages.producer_id IS 'The transactional producer that wrote the row (NULL outside transactions)';
COMMENT ON COLUMN kafka.messages.control IS 'A transaction marker (commit or abort), not a message';

-- The messages of batch-layout topics, shaped like kafka.messages again: a transaction's
-- records with its producer (control false), others with NULLs, as the row layout keeps
-- them. Markers hold no records; open and aborted transactions' records are left out.
CREATE OR REPLACE VIEW kafka.batch_messages AS
SELECT b.topic_id, b.partition, r."offset", r."timestamp", r.key, r.value, r.headers,
       CASE WHEN pg_catalog.get_byte(b.batch, 22) & 16 <> 0 THEN b.producer_id END AS producer_id,
       CASE WHEN pg_catalog.get_byte(b.batch, 22) & 16 <> 0 THEN b.producer_epoch END AS producer_epoch,
       CASE WHEN pg_catalog.get_byte(b.batch, 22) & 16 <> 0 THEN false END AS control
FROM kafka.batches b
CROSS JOIN LATERAL kafka.batch_records(b.batch) r
WHERE r."offset" >= coalesce((SELECT s.log_start_offset FROM kafka.partition_starts s
                              WHERE s.topic_id = b.topic_id AND s.partition = b.partition), 0)
  AND (pg_catalog.get_byte(b.batch, 22) & 16 = 0
       OR kafka.transaction_committed(b.topic_id, b.partition, b.producer_id, b.base_offset));

-- Whether a row-layout row is a message a reader of committed records sees: not a
-- marker, and outside a transaction or in one that committed.
CREATE FUNCTION kafka.row_committed(p_topic_id integer, p_partition integer, p_producer_id bigint, p_control boolean,
                                    p_offset bigint)
RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT p_producer_id IS NULL
        OR (p_control IS NOT TRUE AND kafka.transaction_committed(p_topic_id, p_partition, p_producer_id, p_offset))
$$;

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
WHERE m.producer_id IS NULL OR kafka.row_committed(m.topic_id, m.partition, m.producer_id, m.control, m."offset")
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
-- (each holds at least one record), never the whole partition. Committed records only
-- (0.8.0; row-layout topics 0.9.0): nothing at or after the first record of an open
-- transaction (the group would pass it), nothing of an aborted one, no markers.
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
                   AND m."offset" < coalesce(kafka.first_open_offset(the_topic, n.p), m."offset" + 1)
                   AND (m.producer_id IS NULL
                        OR kafka.row_committed(m.topic_id, m.partition, m.producer_id, m.control, m."offset"))
                 ORDER BY m."offset"
                 LIMIT max_messages)
                UNION ALL
                (SELECT b.partition, r."offset", r."timestamp", r.key, r.value, r.headers
                 FROM (SELECT s.partition, s.batch
                       FROM kafka.batches s
                       WHERE s.topic_id = the_topic AND s.partition = n.p AND s.last_offset >= n.from_offset
                         AND s.base_offset < coalesce(kafka.first_open_offset(the_topic, n.p), s.base_offset + 1)
                         AND (pg_catalog.get_byte(s.batch, 22) & 16 = 0
                              OR kafka.transaction_committed(s.topic_id, s.partition, s.producer_id, s.base_offset))
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
