-- pg_kafka 0.8.0: transactions (core/src/broker/transactions/, core/src/storage/transactions.rs).
-- Part of every fresh install and of the upgrade script from 0.7.0 (with hardening.sql).

-- The transaction coordinator's record of each transactional id: its producer, where its
-- transaction stands, the partitions and groups of the open transaction, and the offsets
-- TxnOffsetCommit sent (parallel arrays, applied when the transaction commits).
CREATE TABLE kafka.transaction_state (
    -- As the client sent it: any UTF-8 string, NUL included, so bytes.
    transactional_id      bytea       PRIMARY KEY,
    producer_id           bigint      NOT NULL,
    producer_epoch        smallint    NOT NULL,
    state                 text        NOT NULL CHECK (state IN ('Empty', 'Ongoing', 'PrepareCommit', 'PrepareAbort',
                                                                'CompleteCommit', 'CompleteAbort')),
    timeout_ms            integer     NOT NULL,
    topic_ids             integer[]   NOT NULL,
    partitions            integer[]   NOT NULL,
    groups                text[]      NOT NULL,
    offset_groups         text[]      NOT NULL,
    offset_topic_ids      integer[]   NOT NULL,
    offset_partitions     integer[]   NOT NULL,
    offsets               bigint[]    NOT NULL,
    offset_leader_epochs  integer[]   NOT NULL,
    offset_metadata       bytea[]     NOT NULL,
    started               timestamptz,
    updated               timestamptz NOT NULL,
    CHECK (pg_catalog.cardinality(topic_ids) OPERATOR(pg_catalog.=) pg_catalog.cardinality(partitions))
);
SELECT pg_catalog.pg_extension_config_dump('kafka.transaction_state', '');

-- The producers with a transaction open on a partition, and the first offset it wrote
-- there: the partition's last stable offset is the smallest of them.
CREATE TABLE kafka.open_transactions (
    topic_id      integer NOT NULL REFERENCES kafka.topics (id) ON DELETE CASCADE,
    partition     integer NOT NULL CHECK (partition >= 0),
    producer_id   bigint  NOT NULL,
    first_offset  bigint  NOT NULL,
    PRIMARY KEY (topic_id, partition, producer_id)
);
SELECT pg_catalog.pg_extension_config_dump('kafka.open_transactions', '');

-- Aborted transactions per partition, from their first record to their marker: what a
-- read_committed Fetch is told to skip.
CREATE TABLE kafka.aborted_transactions (
    topic_id      integer NOT NULL REFERENCES kafka.topics (id) ON DELETE CASCADE,
    partition     integer NOT NULL CHECK (partition >= 0),
    producer_id   bigint  NOT NULL,
    first_offset  bigint  NOT NULL,
    last_offset   bigint  NOT NULL,
    PRIMARY KEY (topic_id, partition, last_offset)
);
SELECT pg_catalog.pg_extension_config_dump('kafka.aborted_transactions', '');

-- Each transactional id as Kafka's kafka-transactions tool describes it.
CREATE VIEW kafka.transactions AS
SELECT CASE WHEN pg_catalog.position(s.transactional_id, '\x00'::bytea) OPERATOR(pg_catalog.=) 0
            THEN pg_catalog.convert_from(s.transactional_id, 'UTF8')
            ELSE pg_catalog.encode(s.transactional_id, 'escape') END AS transactional_id,
       s.producer_id,
       s.producer_epoch,
       s.state,
       ARRAY(SELECT t.name OPERATOR(pg_catalog.||) '-' OPERATOR(pg_catalog.||) p.partition
             FROM ROWS FROM (pg_catalog.unnest(s.topic_ids), pg_catalog.unnest(s.partitions)) AS p(topic_id, partition)
             JOIN kafka.topics t ON t.id OPERATOR(pg_catalog.=) p.topic_id
             ORDER BY 1) AS partitions,
       s.groups,
       s.started,
       s.timeout_ms,
       s.updated
FROM kafka.transaction_state s;
GRANT SELECT ON kafka.transactions TO pg_monitor;

-- The first offset of the oldest transaction open on a partition (NULL: none is open):
-- the partition's last stable offset, where a reader of committed records stops.
CREATE FUNCTION kafka.first_open_offset(p_topic_id integer, p_partition integer) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT min(o.first_offset) FROM kafka.open_transactions o
    WHERE o.topic_id = p_topic_id AND o.partition = p_partition
$$;

-- Whether a transactional batch of a producer, at base_offset, belongs to a transaction
-- that committed: not in one of its aborted ranges, not in its open transaction.
CREATE FUNCTION kafka.transaction_committed(p_topic_id integer, p_partition integer, p_producer_id bigint, p_base_offset bigint)
RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT NOT EXISTS (SELECT 1 FROM kafka.aborted_transactions a
                       WHERE a.topic_id = p_topic_id AND a.partition = p_partition AND a.last_offset > p_base_offset
                         AND a.producer_id = p_producer_id AND a.first_offset <= p_base_offset)
       AND NOT EXISTS (SELECT 1 FROM kafka.open_transactions o
                       WHERE o.topic_id = p_topic_id AND o.partition = p_partition AND o.producer_id = p_producer_id
                         AND o.first_offset <= p_base_offset)
$$;

-- The messages of batch-layout topics (sql/batches.sql), committed records only: a
-- transactional batch (attributes bit 0x10, byte 22 of the batch) shows once its
-- transaction committed. Markers hold no records (kafka.batch_records skips them).
CREATE OR REPLACE VIEW kafka.batch_messages AS
SELECT b.topic_id, b.partition, r."offset", r."timestamp", r.key, r.value, r.headers
FROM kafka.batches b
CROSS JOIN LATERAL kafka.batch_records(b.batch) r
WHERE r."offset" >= coalesce((SELECT s.log_start_offset FROM kafka.partition_starts s
                              WHERE s.topic_id = b.topic_id AND s.partition = b.partition), 0)
  AND (pg_catalog.get_byte(b.batch, 22) & 16 = 0
       OR kafka.transaction_committed(b.topic_id, b.partition, b.producer_id, b.base_offset));

-- The next messages of a topic for a consumer group, moving the group's committed
-- offsets in the same transaction: a SQL consumer that commits has consumed them exactly
-- once, one that rolls back gets them again. Sessions consuming one group take turns (the
-- second waits for the first's transaction, then continues after what it took), so no
-- two read the same message. Up to max_messages, taken round robin over the partitions,
-- each partition's in offset order. A group's first call starts at the log start. Kafka
-- consumers of the same group id would move the same offsets: give SQL consumers groups
-- of their own. Either layout: a batch topic's next max_messages batches are unpacked
-- (each holds at least one record), never the whole partition. Committed records only
-- (0.8.0): nothing at or after the first record of an open transaction (the group would
-- pass it), nothing of an aborted one.
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
