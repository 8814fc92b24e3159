-- The idempotent producers of the given partitions (DescribeProducers): the last sequence
-- of each one's latest batch, and when the partition last stored a batch of it (ms).
SELECT s.topic_id, s.partition, s.producer_id, s.producer_epoch,
       s.recent_batches[pg_catalog.array_upper(s.recent_batches, 1)][2],
       (pg_catalog.date_part('epoch', s.updated_at) * 1000)::bigint
FROM kafka.producer_state s
WHERE (s.topic_id, s.partition) IN (
    SELECT t, p FROM ROWS FROM (pg_catalog.unnest($1::integer[]), pg_catalog.unnest($2::integer[])) AS wanted (t, p))
ORDER BY s.topic_id, s.partition, s.producer_id
LIMIT $3
