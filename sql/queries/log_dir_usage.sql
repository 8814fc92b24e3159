-- kafka.messages's bytes (heap, indexes, TOAST) and the planner's estimate of its rows
-- (-1 before the first VACUUM or ANALYZE), for DescribeLogDirs.
SELECT pg_catalog.pg_total_relation_size(c.oid), c.reltuples::bigint
FROM pg_catalog.pg_class c
WHERE c.oid = 'kafka.messages'::pg_catalog.regclass
