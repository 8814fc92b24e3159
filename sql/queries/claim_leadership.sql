-- The primary's worker leads: $1 is its pg_kafka.node_id. Written only when it changed,
-- so a restart of the same primary writes nothing.
INSERT INTO kafka.cluster_leader (singleton, node_id) VALUES (true, $1)
ON CONFLICT (singleton) DO UPDATE SET node_id = EXCLUDED.node_id, since = pg_catalog.now()
WHERE kafka.cluster_leader.node_id OPERATOR(pg_catalog.<>) EXCLUDED.node_id
