-- pg_kafka 0.11.0: the standbys in sync with a Postgres primary, which every node names
-- as the in-sync replicas of every partition (docs/replication.md). Part of every fresh
-- install and of the upgrade script from 0.10.0 (with hardening.sql).
--
-- The primary's worker writes the node ids of its synchronous standbys
-- (pg_stat_replication.sync_state, matched to pg_kafka.cluster_nodes by application_name)
-- here when they change; standbys read it as Postgres replays it.
CREATE TABLE kafka.cluster_in_sync (
    node_id integer PRIMARY KEY CHECK (node_id >= 0),
    since   timestamptz NOT NULL DEFAULT pg_catalog.now()
);

COMMENT ON TABLE kafka.cluster_in_sync IS 'The standbys (pg_kafka.node_id) synchronous with the primary, as it last saw them: with it, the in-sync replicas of every partition';
