-- pg_kafka 0.3.0: the broker seen from psql. Live figures the worker copies into shared
-- memory every 200 ms (src/monitor.rs, src/connections.rs), readable by pg_monitor
-- members. Part of every fresh install and of the upgrade script from 0.2.0.

-- kafka.connections gains the client software (ApiVersions v3+) and requests in flight.
DROP VIEW kafka.connections;
DROP FUNCTION kafka.connection_list();
CREATE FUNCTION kafka.connection_list() RETURNS TABLE (
    id bigint,
    listener text,
    client_address text,
    principal text,
    client_id text,
    client_software_name text,
    client_software_version text,
    requests_in_flight bigint,
    connected_at timestamptz
)
STRICT STABLE
LANGUAGE c
AS 'MODULE_PATHNAME', 'connection_list_wrapper';
CREATE VIEW kafka.connections AS SELECT * FROM kafka.connection_list();

-- Requests, errors and latency percentiles per API (over the last one to two minutes),
-- produce and fetch totals and rates, group-commit sizes and times, in-flight bytes, queue
-- depths: one row per figure (api is set for per-API ones). The same figures are served
-- to Prometheus on pg_kafka.metrics_listener.
CREATE FUNCTION kafka.broker_stat_list() RETURNS TABLE (metric text, api text, value double precision)
STRICT STABLE LANGUAGE c AS 'MODULE_PATHNAME', 'broker_stat_list_wrapper';
CREATE VIEW kafka.broker_stats AS SELECT * FROM kafka.broker_stat_list();

-- Per API, the same figures side by side.
CREATE VIEW kafka.api_stats AS
SELECT api,
       max(value) FILTER (WHERE metric = 'requests_total')::bigint AS requests,
       max(value) FILTER (WHERE metric = 'errors_total')::bigint AS errors,
       max(value) FILTER (WHERE metric = 'request_latency_ms_p50') AS latency_p50_ms,
       max(value) FILTER (WHERE metric = 'request_latency_ms_p99') AS latency_p99_ms,
       max(value) FILTER (WHERE metric = 'request_latency_ms_p999') AS latency_p999_ms,
       max(value) FILTER (WHERE metric = 'request_latency_ms_max') AS latency_max_ms
FROM kafka.broker_stat_list()
WHERE api IS NOT NULL
GROUP BY api;

CREATE FUNCTION kafka.group_list() RETURNS TABLE (
    group_id text, state text, protocol_type text, protocol text, generation integer, members integer)
STRICT STABLE LANGUAGE c AS 'MODULE_PATHNAME', 'group_list_wrapper';
CREATE FUNCTION kafka.group_member_list() RETURNS TABLE (
    group_id text, member_id text, group_instance_id text, client_id text, client_host text, assignment text)
STRICT STABLE LANGUAGE c AS 'MODULE_PATHNAME', 'group_member_list_wrapper';

-- Consumer groups: the ones with members (live, from the worker) and the ones that only
-- have committed offsets (state Empty), with their total lag.
CREATE VIEW kafka.groups AS
SELECT coalesce(live.group_id, stored.group_id) AS group_id,
       coalesce(live.state, 'Empty') AS state,
       live.protocol_type,
       live.protocol,
       live.generation,
       coalesce(live.members, 0) AS members,
       (SELECT sum(l.lag) FROM kafka.consumer_lag l WHERE l.group_id = coalesce(live.group_id, stored.group_id)) AS lag
FROM kafka.group_list() AS live
FULL JOIN (SELECT DISTINCT o.group_id FROM kafka.consumer_offsets o) AS stored ON stored.group_id = live.group_id;

-- Members of live groups, with their assignment (topic:partitions;... for consumers).
CREATE VIEW kafka.group_members AS SELECT * FROM kafka.group_member_list();

CREATE FUNCTION kafka.partition_figure_list() RETURNS TABLE (
    topic_id integer, "partition" integer, log_start_offset bigint, high_watermark bigint, last_append_time timestamptz)
STRICT STABLE LANGUAGE c AS 'MODULE_PATHNAME', 'partition_figure_list_wrapper';

-- A partition's first readable offset: its first stored message, or where
-- DeleteRecords/retention moved it, or (empty) its high watermark.
CREATE FUNCTION kafka.log_start_offset(p_topic_id integer, p_partition integer) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        greatest(
            (SELECT min("offset") FROM kafka.messages WHERE topic_id = p_topic_id AND partition = p_partition),
            (SELECT log_start_offset FROM kafka.partition_starts WHERE topic_id = p_topic_id AND partition = p_partition)),
        kafka.high_watermark(p_topic_id, p_partition))
$$;

-- Every partition of every topic: its bounds (the worker's, live, where it has them; else
-- read from the table), messages stored, payload bytes (summed from the table, only when
-- selected) and when it was last appended to since the worker started.
CREATE VIEW kafka.topic_partitions AS
SELECT b.topic,
       b.partition,
       b.log_start_offset,
       b.high_watermark,
       b.high_watermark - b.log_start_offset AS rows,
       (SELECT sum(coalesce(octet_length(m.key), 0) + coalesce(octet_length(m.value), 0) + coalesce(octet_length(m.headers), 0))
        FROM kafka.messages m WHERE m.topic_id = b.topic_id AND m.partition = b.partition)::bigint AS bytes,
       b.last_append_time
FROM (
    SELECT t.id AS topic_id,
           t.name AS topic,
           p AS partition,
           coalesce(f.log_start_offset, kafka.log_start_offset(t.id, p)) AS log_start_offset,
           coalesce(f.high_watermark, kafka.high_watermark(t.id, p)) AS high_watermark,
           f.last_append_time
    FROM kafka.topics t
    CROSS JOIN LATERAL generate_series(0, t.partitions - 1) AS p
    LEFT JOIN kafka.partition_figure_list() f ON f.topic_id = t.id AND f."partition" = p
) b;

REVOKE ALL ON FUNCTION kafka.connection_list(), kafka.broker_stat_list(), kafka.group_list(),
    kafka.group_member_list(), kafka.partition_figure_list() FROM PUBLIC;
REVOKE ALL ON kafka.connections, kafka.broker_stats, kafka.api_stats, kafka.groups,
    kafka.group_members, kafka.topic_partitions FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kafka.connection_list(), kafka.broker_stat_list(), kafka.group_list(),
    kafka.group_member_list(), kafka.partition_figure_list() TO pg_monitor;
GRANT SELECT ON kafka.connections, kafka.broker_stats, kafka.api_stats, kafka.groups,
    kafka.group_members, kafka.topic_partitions TO pg_monitor;
