-- The standbys the primary last recorded in sync (src/pg/replication.rs), ascending; NULL
-- for none.
SELECT pg_catalog.array_agg(s.node_id ORDER BY s.node_id) FROM kafka.cluster_in_sync s
