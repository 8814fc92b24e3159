-- pg_kafka 0.12.0: shadow topics, forwarded to an external Kafka cluster, and mirrored
-- topics, forwarded from one into pg_kafka, by the pg_kafka_shadow process (docs/shadow.md). Part of every fresh install and of the
-- upgrade script from 0.11.0 (with hardening.sql).
--
-- The set of shadowed topics is a table so that the forwarder, a process of its own, picks
-- changes up without a restart, and so that it survives a dump and a failover with the
-- data. Its properties may carry the external cluster's credentials: no one but the
-- extension's owner reads it unless granted.
CREATE TABLE kafka.shadow_topics (
    topic_id          integer PRIMARY KEY REFERENCES kafka.topics (id) ON DELETE CASCADE,
    -- export: this topic to the external one (kafka.shadow_topic()); import: the external
    -- topic into this one (kafka.mirror_topic()).
    direction         text NOT NULL DEFAULT 'export' CHECK (direction IN ('export', 'import')),
    external_topic    text NOT NULL CHECK (external_topic ~ '^[a-zA-Z0-9._-]{1,249}$' AND external_topic NOT IN ('.', '..')),
    bootstrap_servers text NOT NULL CHECK (bootstrap_servers <> ''),
    -- librdkafka settings for the external cluster (security.protocol, sasl.*, ssl.*),
    -- each a string: applied to the forwarder's producer and to its cursor reader.
    properties        jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(properties) = 'object'),
    -- The transactional.id and consumer group of this forwarding on the side written to:
    -- the group holds the cursor, committed in the transaction that carries the messages.
    transactional_id  text NOT NULL UNIQUE CHECK (transactional_id <> ''),
    created_at        timestamptz NOT NULL DEFAULT pg_catalog.now()
);

-- Per partition, the next offset of the side read from that the forwarder has committed
-- to the side written to, as it last recorded it after a commit (best effort: the cursor
-- in the written side's transactions is the one that counts; this one may lag it, never
-- lead it), and the read side's high watermark as it last saw it.
CREATE TABLE kafka.shadow_progress (
    topic_id              integer NOT NULL REFERENCES kafka.shadow_topics (topic_id) ON DELETE CASCADE,
    partition             integer NOT NULL CHECK (partition >= 0),
    next_offset           bigint NOT NULL CHECK (next_offset >= 0),
    source_high_watermark bigint,
    updated_at            timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (topic_id, partition)
);

REVOKE ALL ON kafka.shadow_topics, kafka.shadow_progress FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('kafka.shadow_topics', '');
SELECT pg_catalog.pg_extension_config_dump('kafka.shadow_progress', '');

-- Records (or changes) the forwarding of a topic in either direction; returns the
-- transactional.id it uses. Called by kafka.shadow_topic() and kafka.mirror_topic().
CREATE FUNCTION kafka.record_shadow(
    topic             text,
    direction         text,
    bootstrap_servers text,
    external_topic    text,
    properties        jsonb,
    transactional_id  text
) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    source_id integer;
    chosen_id text;
    bad_key   text;
BEGIN
    SELECT t.id INTO source_id FROM kafka.topics t WHERE t.name OPERATOR(pg_catalog.=) record_shadow.topic;
    IF source_id IS NULL THEN
        RAISE EXCEPTION 'topic "%" does not exist', record_shadow.topic USING ERRCODE = 'undefined_object';
    END IF;
    SELECT k INTO bad_key FROM pg_catalog.jsonb_each(coalesce(record_shadow.properties, '{}')) AS e(k, v)
    WHERE pg_catalog.jsonb_typeof(e.v) OPERATOR(pg_catalog.<>) 'string'
       OR e.k OPERATOR(pg_catalog.=) ANY (ARRAY['bootstrap.servers', 'transactional.id', 'group.id']) LIMIT 1;
    IF bad_key IS NOT NULL THEN
        RAISE EXCEPTION 'property "%" of the external cluster is not a string, or is one pg_kafka sets itself', bad_key
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    chosen_id := coalesce(record_shadow.transactional_id,
                          'pg_kafka-' OPERATOR(pg_catalog.||)
                          CASE record_shadow.direction WHEN 'import' THEN 'mirror-' ELSE 'shadow-' END
                          OPERATOR(pg_catalog.||) pg_catalog.current_database()
                          OPERATOR(pg_catalog.||) '-' OPERATOR(pg_catalog.||) record_shadow.topic);
    INSERT INTO kafka.shadow_topics AS s (topic_id, direction, external_topic, bootstrap_servers, properties, transactional_id)
    VALUES (source_id, record_shadow.direction, coalesce(record_shadow.external_topic, record_shadow.topic),
            record_shadow.bootstrap_servers, coalesce(record_shadow.properties, '{}'), chosen_id)
    ON CONFLICT (topic_id) DO UPDATE
        SET direction = excluded.direction, external_topic = excluded.external_topic,
            bootstrap_servers = excluded.bootstrap_servers, properties = excluded.properties,
            transactional_id = excluded.transactional_id;
    RETURN chosen_id;
END
$$;

-- Forwards a pg_kafka topic to an external cluster (external_topic: the same name unless given).
CREATE FUNCTION kafka.shadow_topic(
    topic             text,
    bootstrap_servers text,
    external_topic    text DEFAULT NULL,
    properties        jsonb DEFAULT '{}',
    transactional_id  text DEFAULT NULL
) RETURNS text
LANGUAGE sql AS $$
    SELECT kafka.record_shadow(shadow_topic.topic, 'export', shadow_topic.bootstrap_servers, shadow_topic.external_topic,
                               shadow_topic.properties, shadow_topic.transactional_id)
$$;

-- Mirrors an external cluster's topic into a pg_kafka topic (topic: the same name unless given).
CREATE FUNCTION kafka.mirror_topic(
    external_topic    text,
    bootstrap_servers text,
    topic             text DEFAULT NULL,
    properties        jsonb DEFAULT '{}',
    transactional_id  text DEFAULT NULL
) RETURNS text
LANGUAGE sql AS $$
    SELECT kafka.record_shadow(coalesce(mirror_topic.topic, mirror_topic.external_topic), 'import', mirror_topic.bootstrap_servers,
                               mirror_topic.external_topic, mirror_topic.properties, mirror_topic.transactional_id)
$$;

-- Stops the forwarding of a topic, either way (the forwarder notices within seconds); true
-- if there was one.
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

REVOKE ALL ON FUNCTION kafka.record_shadow(text, text, text, text, jsonb, text), kafka.shadow_topic(text, text, text, jsonb, text),
    kafka.mirror_topic(text, text, text, jsonb, text), kafka.unshadow_topic(text) FROM PUBLIC;

-- Per partition of every shadowed or mirrored topic: how far the forwarder is behind, in
-- messages of the side it reads. An export reads pg_kafka, whose high watermark is here; an
-- import reads the external cluster, whose high watermark the forwarder records. Without a
-- recorded cursor an export is behind by all the partition holds, an import unknown.
CREATE VIEW kafka.shadow_lag AS
SELECT tp.topic,
       s.direction,
       s.external_topic,
       tp.partition,
       CASE s.direction WHEN 'export' THEN tp.high_watermark ELSE p.source_high_watermark END AS high_watermark,
       p.next_offset AS forwarded_to,
       CASE s.direction
           WHEN 'export' THEN greatest(tp.high_watermark - greatest(coalesce(p.next_offset, tp.log_start_offset), tp.log_start_offset), 0)
           ELSE greatest(p.source_high_watermark - p.next_offset, 0)
       END AS lag,
       p.updated_at AS last_forwarded
FROM kafka.shadow_topics s
JOIN kafka.topics t ON t.id = s.topic_id
JOIN kafka.topic_partitions tp ON tp.topic = t.name
LEFT JOIN kafka.shadow_progress p ON p.topic_id = s.topic_id AND p.partition = tp.partition;

REVOKE ALL ON kafka.shadow_lag FROM PUBLIC;
GRANT SELECT ON kafka.shadow_lag, kafka.shadow_progress TO pg_monitor;

COMMENT ON TABLE kafka.shadow_topics IS 'Topics forwarded to (kafka.shadow_topic()) or from (kafka.mirror_topic()) an external Kafka cluster by pg_kafka_shadow, exactly once';
COMMENT ON TABLE kafka.shadow_progress IS 'Per partition of a shadowed topic, the next offset pg_kafka_shadow has committed to the external cluster, as last recorded';
COMMENT ON VIEW kafka.shadow_lag IS 'Per partition of every shadowed or mirrored topic, the messages not yet forwarded';
