-- pg_kafka 0.2.0: logins, ACLs and who is connected (the security issue). Part of every
-- fresh install (after schema.sql) and, with connections.sql, the whole of the upgrade
-- script from 0.1.0 (`make install` writes sql/pg_kafka--0.1.0--0.2.0.sql from them).

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

SELECT pg_catalog.pg_extension_config_dump('kafka.acls', '');
