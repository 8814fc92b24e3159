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

-- kafka.topic_messages and kafka.consume() read both layouts: sql/batches.sql (0.6.0).
