-- The worker's first statement in its database: the extension's objects, if absent. The
-- session's search_path is pg_catalog, pg_temp (src/pg/privileged.rs), which would make
-- pg_catalog the extension's schema: it goes where a CREATE EXTENSION on the default
-- path puts it, public, where that schema exists.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname OPERATOR(pg_catalog.=) 'pg_kafka') THEN
        IF EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname OPERATOR(pg_catalog.=) 'public') THEN
            CREATE EXTENSION pg_kafka SCHEMA public;
        ELSE
            CREATE EXTENSION pg_kafka;
        END IF;
    END IF;
END
$$
