-- pg_kafka 0.10.0: which node leads a Postgres primary and its hot standbys
-- (docs/replication.md). Part of every fresh install and of the upgrade script from 0.9.0
-- (with hardening.sql).
--
-- The primary's worker writes its pg_kafka.node_id here when it starts (after a promotion
-- too); standbys read it as Postgres replays it, and tell clients that node leads every
-- partition and coordinates every group. One row at most.
CREATE TABLE kafka.cluster_leader (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    node_id   integer NOT NULL CHECK (node_id >= 0),
    since     timestamptz NOT NULL DEFAULT pg_catalog.now()
);

COMMENT ON TABLE kafka.cluster_leader IS 'The node (pg_kafka.node_id) whose Postgres is the primary: it leads every partition';
