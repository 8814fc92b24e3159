-- pg_kafka 0.3.0: produce from SQL inside any transaction, read topics with SQL, consume
-- them as a group. Part of every fresh install and the whole of the upgrade script from
-- 0.2.0 (`make install` writes sql/pg_kafka--0.2.0--0.3.0.sql from it).

-- A message into a topic, in the caller's transaction: visible to Kafka consumers when
-- it commits, never if it rolls back. Returns its offset. partition NULL: Kafka's murmur2
-- partitioner on the key (where a Java producer would put it); key NULL too: one
-- partition per topic and transaction. The caller holds the partition's append lock
-- until its transaction ends (src/outbox/mod.rs). Needs INSERT on kafka.messages or a
-- Kafka ACL allowing WRITE on the topic.
CREATE FUNCTION kafka.produce(topic text, key bytea, value bytea, headers jsonb DEFAULT NULL,
                              "partition" integer DEFAULT NULL, "timestamp" timestamptz DEFAULT NULL)
RETURNS bigint
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'produce_wrapper';

-- Text key and value (UTF-8).
CREATE FUNCTION kafka.produce(topic text, key text, value text, headers jsonb DEFAULT NULL,
                              "partition" integer DEFAULT NULL, "timestamp" timestamptz DEFAULT NULL)
RETURNS bigint
VOLATILE PARALLEL UNSAFE
LANGUAGE sql
AS $$ SELECT kafka.produce($1, convert_to($2, 'UTF8'), convert_to($3, 'UTF8'), $4, $5, $6) $$;

-- Text key, JSON value (its text).
CREATE FUNCTION kafka.produce(topic text, key text, value jsonb, headers jsonb DEFAULT NULL,
                              "partition" integer DEFAULT NULL, "timestamp" timestamptz DEFAULT NULL)
RETURNS bigint
VOLATILE PARALLEL UNSAFE
LANGUAGE sql
AS $$ SELECT kafka.produce($1, convert_to($2, 'UTF8'), convert_to($3::text, 'UTF8'), $4, $5, $6) $$;

-- Many messages in one call: their offsets, in the array's order.
CREATE TYPE kafka.outgoing AS (key bytea, value bytea, headers jsonb, "partition" integer, "timestamp" timestamptz);

CREATE FUNCTION kafka.produce(topic text, messages kafka.outgoing[])
RETURNS bigint[]
VOLATILE PARALLEL UNSAFE
LANGUAGE sql
AS $$
    SELECT coalesce(array_agg(kafka.produce($1, m.key, m.value, m.headers, m."partition", m."timestamp") ORDER BY m.n), '{}')
    FROM unnest($2) WITH ORDINALITY AS m(key, value, headers, "partition", "timestamp", n)
$$;

-- Stored headers (Kafka's record encoding) as a JSON object, and JSON (an object or an
-- array of [key, value] pairs) back into that encoding. Binary values read as "\x<hex>".
CREATE FUNCTION kafka.headers(encoded bytea) RETURNS jsonb
IMMUTABLE STRICT PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', 'headers_wrapper';
CREATE FUNCTION kafka.encode_headers(headers jsonb) RETURNS bytea
IMMUTABLE STRICT PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', 'encode_headers_wrapper';

-- A payload as text / jsonb when it is one, else NULL (never an error).
CREATE FUNCTION kafka.try_text(bytes bytea) RETURNS text
IMMUTABLE STRICT PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', 'try_text_wrapper';
CREATE FUNCTION kafka.try_jsonb(bytes bytea) RETURNS jsonb
IMMUTABLE STRICT PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', 'try_jsonb_wrapper';

-- Every message with its topic's name, headers as JSON, key and value as text and JSON
-- where they are. Filter on topic, partition and offset to read through the primary key.
CREATE VIEW kafka.topic_messages AS
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
JOIN kafka.topics t ON t.id = m.topic_id;

COMMENT ON VIEW kafka.topic_messages IS 'Messages with topic names, decoded headers, and values as text/jsonb where they parse';

-- The next messages of a topic for a consumer group, moving the group's committed
-- offsets in the same transaction: a SQL consumer that commits has consumed them exactly
-- once, one that rolls back gets them again. Sessions consuming one group take turns (the
-- second waits for the first's transaction, then continues after what it took), so no
-- two read the same message. Up to max_messages, taken round robin over the partitions,
-- each partition's in offset order. A group's first call starts at the log start. Kafka
-- consumers of the same group id would move the same offsets: give SQL consumers groups
-- of their own.
CREATE FUNCTION kafka.consume(group_id text, topic text, max_messages integer DEFAULT 100)
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
            SELECT * FROM kafka.messages m
            WHERE m.topic_id = the_topic AND m.partition = n.p AND m."offset" >= n.from_offset
            ORDER BY m."offset"
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
