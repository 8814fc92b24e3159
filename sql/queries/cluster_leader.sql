-- The node that last said it leads (src/pg/leadership.rs); NULL before any did, or in a
-- database whose extension predates 0.10.0 (no table: the caller checks first).
SELECT l.node_id FROM kafka.cluster_leader l
