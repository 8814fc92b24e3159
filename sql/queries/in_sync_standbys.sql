-- The standbys in sync now (core/src/writer/replicas.rs). Run only while this process
-- sees synchronous_standby_names and a synchronous_commit that waits for standbys
-- (src/pg/replication.rs decides that from its own settings).
SELECT pg_catalog.count(*) FROM pg_catalog.pg_stat_replication r
WHERE r.sync_state OPERATOR(pg_catalog.=) ANY (ARRAY['sync', 'quorum'])
