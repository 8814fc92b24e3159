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
-- Only keys pg_kafka enforces are stored; everything else reads as Kafka's default.
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

-- Kafka ACLs, in Kafka's codes: resource type (2 topic, 3 group, 4 cluster,
-- 5 transactional id, 6 delegation token, 7 user), pattern (3 literal, 4 prefixed),
-- operation (2 all, 3 read, 4 write, 5 create, 6 delete, 7 alter, 8 describe,
-- 9 cluster action, 10 describe configs, 11 alter configs, 12 idempotent write,
-- 13 create tokens, 14 describe tokens), permission (2 deny, 3 allow). An ACL for
-- User:<role> applies to every member of <role>. Managed with CreateAcls/DeleteAcls or
-- kafka.grant_acl/kafka.revoke_acl; readable by superusers only.
CREATE TABLE kafka.acls (
    resource_type  smallint NOT NULL CHECK (resource_type BETWEEN 2 AND 7),
    resource_name  text     NOT NULL CHECK (resource_name <> ''),
    pattern_type   smallint NOT NULL CHECK (pattern_type IN (3, 4)),
    principal      text     NOT NULL CHECK (principal LIKE 'User:_%'),
    host           text     NOT NULL DEFAULT '*',
    operation      smallint NOT NULL CHECK (operation BETWEEN 2 AND 14),
    permission     smallint NOT NULL CHECK (permission IN (2, 3)),
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (resource_type, resource_name, pattern_type, principal, host, operation, permission)
);
REVOKE ALL ON kafka.acls FROM PUBLIC;

-- Kafka's names for the codes above (lower case, underscores).
CREATE FUNCTION kafka.acl_code(kind text, name text) RETURNS smallint
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT code::smallint FROM (VALUES
        ('resource', 'topic', 2), ('resource', 'group', 3), ('resource', 'cluster', 4),
        ('resource', 'transactional_id', 5), ('resource', 'delegation_token', 6), ('resource', 'user', 7),
        ('pattern', 'literal', 3), ('pattern', 'prefixed', 4),
        ('operation', 'all', 2), ('operation', 'read', 3), ('operation', 'write', 4), ('operation', 'create', 5),
        ('operation', 'delete', 6), ('operation', 'alter', 7), ('operation', 'describe', 8),
        ('operation', 'cluster_action', 9), ('operation', 'describe_configs', 10), ('operation', 'alter_configs', 11),
        ('operation', 'idempotent_write', 12), ('operation', 'create_tokens', 13), ('operation', 'describe_tokens', 14),
        ('permission', 'deny', 2), ('permission', 'allow', 3)
    ) AS c(k, n, code)
    WHERE k = kind AND n = lower(replace(name, ' ', '_'))
$$;

-- The ACLs with names instead of codes.
CREATE VIEW kafka.acl_bindings AS
SELECT (SELECT n FROM (VALUES (2, 'topic'), (3, 'group'), (4, 'cluster'), (5, 'transactional_id'), (6, 'delegation_token'), (7, 'user')) v(c, n) WHERE c = a.resource_type) AS resource_type,
       a.resource_name,
       CASE a.pattern_type WHEN 3 THEN 'literal' ELSE 'prefixed' END AS pattern_type,
       a.principal,
       a.host,
       (SELECT n FROM (VALUES (2, 'all'), (3, 'read'), (4, 'write'), (5, 'create'), (6, 'delete'), (7, 'alter'), (8, 'describe'),
                              (9, 'cluster_action'), (10, 'describe_configs'), (11, 'alter_configs'), (12, 'idempotent_write'),
                              (13, 'create_tokens'), (14, 'describe_tokens')) v(c, n) WHERE c = a.operation) AS operation,
       CASE a.permission WHEN 2 THEN 'deny' ELSE 'allow' END AS permission,
       a.created_at
FROM kafka.acls a;
REVOKE ALL ON kafka.acl_bindings FROM PUBLIC;

-- Grants `operation` on a resource to role `role` (and so to its members), e.g.
-- SELECT kafka.grant_acl('app_writers', 'write', 'topic', 'orders');
CREATE FUNCTION kafka.grant_acl(role name, operation text, resource_type text, resource_name text,
                                pattern_type text DEFAULT 'literal', permission text DEFAULT 'allow',
                                host text DEFAULT '*') RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    codes smallint[] := ARRAY[kafka.acl_code('resource', resource_type), kafka.acl_code('pattern', pattern_type),
                              kafka.acl_code('operation', operation), kafka.acl_code('permission', permission)];
BEGIN
    IF array_position(codes, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'unknown ACL name in (%, %, %, %)', resource_type, pattern_type, operation, permission
            USING HINT = 'names are Kafka''s: topic/group/cluster, literal/prefixed, read/write/create/delete/alter/describe/..., allow/deny';
    END IF;
    INSERT INTO kafka.acls (resource_type, resource_name, pattern_type, principal, host, operation, permission)
    VALUES (codes[1], CASE WHEN codes[1] = 4 THEN 'kafka-cluster' ELSE resource_name END, codes[2], 'User:' || role, host, codes[3], codes[4])
    ON CONFLICT DO NOTHING;
END
$$;

-- Removes what kafka.grant_acl granted; returns how many ACLs were removed.
CREATE FUNCTION kafka.revoke_acl(role name, operation text, resource_type text, resource_name text,
                                 pattern_type text DEFAULT 'literal', permission text DEFAULT 'allow',
                                 host text DEFAULT '*') RETURNS bigint
LANGUAGE sql AS $$
    WITH gone AS (
        DELETE FROM kafka.acls a
        WHERE a.principal = 'User:' || role AND a.host = revoke_acl.host
          AND a.resource_type = kafka.acl_code('resource', revoke_acl.resource_type)
          AND a.resource_name = CASE WHEN a.resource_type = 4 THEN 'kafka-cluster' ELSE revoke_acl.resource_name END
          AND a.pattern_type = kafka.acl_code('pattern', revoke_acl.pattern_type)
          AND a.operation = kafka.acl_code('operation', revoke_acl.operation)
          AND a.permission = kafka.acl_code('permission', revoke_acl.permission)
        RETURNING 1)
    SELECT count(*) FROM gone
$$;
REVOKE ALL ON FUNCTION kafka.grant_acl FROM PUBLIC;
REVOKE ALL ON FUNCTION kafka.revoke_acl FROM PUBLIC;

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
SELECT pg_catalog.pg_extension_config_dump('kafka.acls', '');
