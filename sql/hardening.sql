-- pg_kafka 0.4.0: every SQL-language function of the extension runs with a fixed
-- search_path, and pg_monitor members can reach the monitoring views they are granted.
-- Part of every fresh install (last) and of the upgrade script from 0.3.0, after
-- offsets.sql (`make install` writes sql/pg_kafka--0.3.0--0.4.0.sql from them).
--
-- A function body is resolved with the caller's search_path unless the function sets
-- its own: a role that puts a schema of its own (or pg_temp) before pg_catalog would
-- choose which `=` or `count()` the body means. pg_catalog first, pg_temp last, and the
-- extension's objects always written kafka.-qualified (src/pg/privileged.rs says the
-- same for the C code). A function added in a later version gets the same SET.
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN
        SELECT p.oid
        FROM pg_catalog.pg_proc p
        JOIN pg_catalog.pg_language l ON l.oid OPERATOR(pg_catalog.=) p.prolang
        WHERE p.pronamespace OPERATOR(pg_catalog.=) 'kafka'::regnamespace
          AND l.lanname OPERATOR(pg_catalog.=) ANY (ARRAY['sql', 'plpgsql']::name[])
        ORDER BY p.oid
    LOOP
        EXECUTE pg_catalog.format('ALTER FUNCTION %s SET search_path = pg_catalog, pg_temp', f);
    END LOOP;
END
$$;

-- The views granted to pg_monitor (connections.sql, monitor.sql) are in schema kafka:
-- without USAGE on it a pg_monitor member could not name them.
GRANT USAGE ON SCHEMA kafka TO pg_monitor;
