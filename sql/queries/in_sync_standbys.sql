-- The application_names of the standbys in sync now (core/src/writer/replicas.rs); NULL
-- for none. Run only while this process sees synchronous_standby_names and a
-- synchronous_commit that waits for standbys (src/pg/replication.rs decides that from its
-- own settings).
SELECT pg_catalog.array_agg(r.application_name::text) FROM pg_catalog.pg_stat_replication r
WHERE r.sync_state OPERATOR(pg_catalog.=) ANY (ARRAY['sync', 'quorum'])
