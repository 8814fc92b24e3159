-- The standbys in sync now, or NULL when commits wait for no standby: no
-- synchronous_standby_names, or the writer's synchronous_commit is off or local
-- (core/src/writer/replicas.rs).
SELECT CASE
    WHEN pg_catalog.current_setting('synchronous_standby_names') OPERATOR(pg_catalog.=) ''
      OR pg_catalog.current_setting('synchronous_commit') OPERATOR(pg_catalog.=) ANY (ARRAY['off', 'local'])
    THEN NULL
    ELSE (SELECT pg_catalog.count(*) FROM pg_catalog.pg_stat_replication r
          WHERE r.sync_state OPERATOR(pg_catalog.=) ANY (ARRAY['sync', 'quorum']))
END
