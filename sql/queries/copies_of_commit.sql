-- The copies a commit ending at $1 (a pg_lsn as text) has now: this node's, and one per
-- standby that has written, flushed or applied it as $2 (synchronous_commit) asks
-- (core/src/writer/replicas.rs: after a commit that waited for standbys).
SELECT 1 OPERATOR(pg_catalog.+) pg_catalog.count(*) FROM pg_catalog.pg_stat_replication r
WHERE CASE $2 WHEN 'remote_write' THEN r.write_lsn WHEN 'remote_apply' THEN r.replay_lsn ELSE r.flush_lsn END
      OPERATOR(pg_catalog.>=) $1::pg_catalog.pg_lsn
