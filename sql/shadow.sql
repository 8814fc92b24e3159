-- pg_kafka 0.12.0: shadow topics, forwarded to an external Kafka cluster by the
-- pg_kafka_shadow process (docs/shadow.md). Part of every fresh install and of the
-- upgrade script from 0.11.0 (with hardening.sql).
--
-- The set of shadowed topics is a table so that the forwarder, a process of its own, picks
-- changes up without a restart, and so that it survives a dump and a failover with the
-- data. Its properties may carry the external cluster's credentials: no one but the
-- extension's owner reads it unless granted.
CREATE TABLE kafka.shadow_topics (
    topic_id          integer PRIMARY KEY REFERENCES kafka.topics (id) ON DELETE CASCADE,
    external_topic    text NOT NULL CHECK (external_topic ~ '^[a-zA-Z0-9._-]{1,249}$' AND external_topic NOT IN ('.', '..')),
    bootstrap_servers text NOT NULL CHECK (bootstrap_servers <> ''),
    -- librdkafka settings for the external cluster (security.protocol, sasl.*, ssl.*),
    -- each a string: applied to the forwarder's producer and to its cursor reader.
    properties        jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(properties) = 'object'),
    -- The external cluster's transactional.id and consumer group of this forwarding: the
    -- group holds the forward cursor, committed in the transaction that carries the messages.
    transactional_id  text NOT NULL UNIQUE CHECK (transactional_id <> ''),
    created_at        timestamptz NOT NULL DEFAULT pg_catalog.now()
);

-- Per partition, the next offset the forwarder has committed to the external cluster, as it
-- last recorded it after a commit (best effort: the external cluster's own record, the
-- cursor in its transaction, is the one that counts; this one may lag it, never lead it).
CREATE TABLE kafka.shadow_progress (
    topic_id       integer NOT NULL REFERENCES kafka.shadow_topics (topic_id) ON DELETE CASCADE,
    partition      integer NOT NULL CHECK (partition >= 0),
    next_offset    bigint NOT NULL CHECK (next_offset >= 0),
    updated_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (topic_id, partition)
);

REVOKE ALL ON kafka.shadow_topics, kafka.shadow_progress FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('kafka.shadow_topics', '');
SELECT pg_catalog.pg_extension_config_dump('kafka.shadow_progress', '');

-- Starts (or changes) the forwarding of a topic; returns the transactional.id it uses.
CREATE FUNCTION kafka.shadow_topic(
    topic             text,
    bootstrap_servers text,
    external_topic    text DEFAULT NULL,
    properties        jsonb DEFAULT '{}',
    transactional_id  text DEFAULT NULL
) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    source_id integer;
    chosen_id text;
    bad_key   text;
BEGIN
    SELECT t.id INTO source_id FROM kafka.topics t WHERE t.name OPERATOR(pg_catalog.=) shadow_topic.topic;
    IF source_id IS NULL THEN
        RAISE EXCEPTION 'topic "%" does not exist', shadow_topic.topic USING ERRCODE = 'undefined_object';
    END IF;
    SELECT k INTO bad_key FROM pg_catalog.jsonb_each(coalesce(shadow_topic.properties, '{}')) AS e(k, v)
    WHERE pg_catalog.jsonb_typeof(e.v) OPERATOR(pg_catalog.<>) 'string'
       OR e.k OPERATOR(pg_catalog.=) ANY (ARRAY['bootstrap.servers', 'transactional.id', 'group.id']) LIMIT 1;
    IF bad_key IS NOT NULL THEN
        RAISE EXCEPTION 'property "%" of the external cluster is not a string, or is one pg_kafka sets itself', bad_key
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    chosen_id := coalesce(shadow_topic.transactional_id,
                          'pg_kafka-shadow-' OPERATOR(pg_catalog.||) pg_catalog.current_database()
                          OPERATOR(pg_catalog.||) '-' OPERATOR(pg_catalog.||) shadow_topic.topic);
    INSERT INTO kafka.shadow_topics AS s (topic_id, external_topic, bootstrap_servers, properties, transactional_id)
    VALUES (source_id, coalesce(shadow_topic.external_topic, shadow_topic.topic), shadow_topic.bootstrap_servers,
            coalesce(shadow_topic.properties, '{}'), chosen_id)
    ON CONFLICT (topic_id) DO UPDATE
        SET external_topic = excluded.external_topic, bootstrap_servers = excluded.bootstrap_servers,
            properties = excluded.properties, transactional_id = excluded.transactional_id;
    RETURN chosen_id;
END
$$;

-- Stops the forwarding of a topic (the forwarder notices within seconds); true if it was.
CREATE FUNCTION kafka.unshadow_topic(topic text) RETURNS boolean
LANGUAGE sql AS $$
    WITH gone AS (
        DELETE FROM kafka.shadow_topics s
        USING kafka.topics t
        WHERE t.id OPERATOR(pg_catalog.=) s.topic_id AND t.name OPERATOR(pg_catalog.=) unshadow_topic.topic
        RETURNING 1
    )
    SELECT pg_catalog.count(*) OPERATOR(pg_catalog.>) 0 FROM gone
$$;

REVOKE ALL ON FUNCTION kafka.shadow_topic(text, text, text, jsonb, text), kafka.unshadow_topic(text) FROM PUBLIC;

-- Per partition of every shadowed topic: how far the forwarder is behind, in messages.
-- Without a recorded cursor the partition is behind by all it holds.
CREATE VIEW kafka.shadow_lag AS
SELECT tp.topic,
       s.external_topic,
       tp.partition,
       tp.high_watermark,
       p.next_offset AS forwarded_to,
       greatest(tp.high_watermark - greatest(coalesce(p.next_offset, tp.log_start_offset), tp.log_start_offset), 0) AS lag,
       p.updated_at AS last_forwarded
FROM kafka.shadow_topics s
JOIN kafka.topics t ON t.id = s.topic_id
JOIN kafka.topic_partitions tp ON tp.topic = t.name
LEFT JOIN kafka.shadow_progress p ON p.topic_id = s.topic_id AND p.partition = tp.partition;

REVOKE ALL ON kafka.shadow_lag FROM PUBLIC;
GRANT SELECT ON kafka.shadow_lag, kafka.shadow_progress TO pg_monitor;

COMMENT ON TABLE kafka.shadow_topics IS 'Topics forwarded to an external Kafka cluster by pg_kafka_shadow, exactly once (kafka.shadow_topic())';
COMMENT ON TABLE kafka.shadow_progress IS 'Per partition of a shadowed topic, the next offset pg_kafka_shadow has committed to the external cluster, as last recorded';
COMMENT ON VIEW kafka.shadow_lag IS 'Per partition of every shadowed topic, the messages not yet forwarded';
