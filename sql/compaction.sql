-- pg_kafka 0.7.0: compacted topics (cleanup.policy=compact; core/src/writer/compaction.rs).
-- Part of every fresh install and of the upgrade script from 0.6.0 (with hardening.sql).

-- Compaction rewrites a batch without its superseded records, keeping its offsets and its
-- last offset delta (as Kafka's cleaner does): a batch may now hold fewer records than the
-- offsets it spans.
ALTER TABLE kafka.batches DROP CONSTRAINT batches_check;
ALTER TABLE kafka.batches ADD CONSTRAINT batches_span_check CHECK (last_offset >= base_offset + record_count - 1);

-- Where compaction stands on each compacted partition: below cleaned_to the partition is
-- compacted; clean_bytes is what that part kept (the dirty ratio's base); reached_offsets
-- and reached_at say which offsets recent passes reached when (a tombstone goes
-- delete.retention.ms after a pass reached it).
CREATE TABLE kafka.partition_cleaning (
    topic_id         integer     NOT NULL REFERENCES kafka.topics (id) ON DELETE CASCADE,
    partition        integer     NOT NULL CHECK (partition >= 0),
    cleaned_to       bigint      NOT NULL,
    clean_bytes      bigint      NOT NULL,
    reached_offsets  bigint[]    NOT NULL,
    reached_at       timestamptz[] NOT NULL,
    last_pass        timestamptz NOT NULL,
    last_removed     bigint      NOT NULL,
    removed_total    bigint      NOT NULL,
    -- A round of cleaning that spans passes (0: none): its dirty part's end, and how far
    -- its walk from the log start has come.
    round_end        bigint      NOT NULL DEFAULT 0,
    walked_to        bigint      NOT NULL DEFAULT 0,
    PRIMARY KEY (topic_id, partition)
);
SELECT pg_catalog.pg_extension_config_dump('kafka.partition_cleaning', '');
GRANT SELECT ON kafka.partition_cleaning TO pg_monitor;

-- kafka.topic_partitions with where compaction stands (NULL on topics that are not
-- compacted): the offset below which the partition is compacted, the bytes written since
-- (dirty_bytes, in the same measure as bytes) and their share of the partition (Kafka's
-- dirty ratio, which min.cleanable.dirty.ratio is compared with), the last pass that
-- cleaned it and how many records compaction removed from it in all.
CREATE OR REPLACE VIEW kafka.topic_partitions AS
SELECT b.topic,
       b.partition,
       b.log_start_offset,
       b.high_watermark,
       b.high_watermark - b.log_start_offset AS rows,
       s.bytes,
       b.last_append_time,
       CASE WHEN b.compacted THEN greatest(c.cleaned_to, b.log_start_offset) END AS cleaned_to,
       CASE WHEN b.compacted THEN s.dirty_bytes END AS dirty_bytes,
       CASE WHEN b.compacted AND s.bytes > 0 THEN round(s.dirty_bytes::numeric / s.bytes, 4) END AS dirty_ratio,
       CASE WHEN b.compacted THEN c.last_pass END AS last_compaction,
       CASE WHEN b.compacted THEN coalesce(c.removed_total, 0) END AS compaction_removed
FROM (
    SELECT t.id AS topic_id,
           t.name AS topic,
           p AS partition,
           coalesce(f.log_start_offset, kafka.log_start_offset(t.id, p)) AS log_start_offset,
           coalesce(f.high_watermark, kafka.high_watermark(t.id, p)) AS high_watermark,
           f.last_append_time,
           EXISTS (SELECT 1 FROM kafka.topic_configs k
                   WHERE k.topic_id OPERATOR(pg_catalog.=) t.id AND k.name OPERATOR(pg_catalog.=) 'cleanup.policy'
                     AND 'compact' OPERATOR(pg_catalog.=) ANY (pg_catalog.string_to_array(pg_catalog.replace(pg_catalog.lower(k.value), ' ', ''), ','))) AS compacted
    FROM kafka.topics t
    CROSS JOIN LATERAL generate_series(0, t.partitions - 1) AS p
    LEFT JOIN kafka.partition_figure_list() f ON f.topic_id = t.id AND f."partition" = p
) b
LEFT JOIN kafka.partition_cleaning c ON c.topic_id = b.topic_id AND c.partition = b.partition
CROSS JOIN LATERAL (
    SELECT coalesce(sum(x.bytes), 0)::bigint AS bytes,
           coalesce(sum(x.bytes) FILTER (WHERE x.last_offset >= coalesce(c.cleaned_to, 0)), 0)::bigint AS dirty_bytes
    FROM (SELECT m."offset" AS last_offset,
                 coalesce(octet_length(m.key), 0) + coalesce(octet_length(m.value), 0) + coalesce(octet_length(m.headers), 0) AS bytes
          FROM kafka.messages m WHERE m.topic_id = b.topic_id AND m.partition = b.partition
          UNION ALL
          SELECT s.last_offset, octet_length(s.batch)
          FROM kafka.batches s WHERE s.topic_id = b.topic_id AND s.partition = b.partition) x
) s;

-- A compacted topic as a table (a KTable in SQL): per partition, each key's latest record,
-- unless that is a tombstone. What a consumer folding the topic from its log start to the
-- high watermark holds (a key lives in one partition when producers partition by key).
-- Runs with the caller's rights over kafka.topic_messages.
CREATE FUNCTION kafka.latest(topic text)
RETURNS TABLE (partition integer, "offset" bigint, "timestamp" timestamptz, key bytea, value bytea,
               key_text text, value_text text, value_json jsonb, headers jsonb)
LANGUAGE sql STABLE STRICT AS $$
    SELECT l.partition, l."offset", l."timestamp", l.key, l.value, l.key_text, l.value_text, l.value_json, l.headers
    FROM (SELECT DISTINCT ON (m.partition, m.key) m.*
          FROM kafka.topic_messages m
          WHERE m.topic OPERATOR(pg_catalog.=) latest.topic AND m.key IS NOT NULL
          ORDER BY m.partition, m.key, m."offset" DESC) l
    WHERE l.value IS NOT NULL
    ORDER BY l.partition, l."offset"
$$;
COMMENT ON FUNCTION kafka.latest(text) IS 'Each key''s latest record of a topic (tombstoned keys left out): a compacted topic as a table';
