-- The primary's worker records the standbys in sync now ($1: their node ids), when they
-- changed: those no longer in sync go, those new to it come with the time they came.
WITH gone AS (
    DELETE FROM kafka.cluster_in_sync s WHERE s.node_id OPERATOR(pg_catalog.<>) ALL ($1)
)
INSERT INTO kafka.cluster_in_sync (node_id) SELECT DISTINCT n FROM pg_catalog.unnest($1) n
ON CONFLICT (node_id) DO NOTHING
