-- Who is connected to the Kafka listeners: listener, address, login role (once
-- authenticated), client id, and since when. Live, from the worker's shared memory
-- (src/connections.rs, whose connection_list_wrapper is the C function below).
CREATE FUNCTION kafka.connection_list() RETURNS TABLE (
    id bigint,
    listener text,
    client_address text,
    principal text,
    client_id text,
    connected_at timestamptz
)
STRICT STABLE
LANGUAGE c
AS 'MODULE_PATHNAME', 'connection_list_wrapper';

CREATE VIEW kafka.connections AS SELECT * FROM kafka.connection_list();
REVOKE ALL ON FUNCTION kafka.connection_list() FROM PUBLIC;
REVOKE ALL ON kafka.connections FROM PUBLIC;
GRANT SELECT ON kafka.connections TO pg_monitor;
GRANT EXECUTE ON FUNCTION kafka.connection_list() TO pg_monitor;
