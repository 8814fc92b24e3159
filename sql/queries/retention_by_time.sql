-- The first offset whose timestamp is inside retention ($3 = oldest kept), walking the
-- primary key from the log start: reads the rows that expire, plus one (not the index
-- entries of rows earlier passes deleted, which vacuum may not have removed yet). For
-- batches, as Kafka deletes segments: the first batch with a timestamp inside retention
-- is kept whole.
WITH log_start AS (
    SELECT coalesce((SELECT log_start_offset FROM kafka.partition_starts WHERE topic_id = $1 AND partition = $2), 0) AS o
)
SELECT least(
    (SELECT min("offset") FROM kafka.messages
     WHERE topic_id = $1 AND partition = $2 AND "timestamp" >= $3 AND "offset" >= (SELECT o FROM log_start)),
    (SELECT b.base_offset FROM kafka.batches b
     WHERE b.topic_id = $1 AND b.partition = $2 AND b.max_timestamp >= $3 AND b.last_offset >= (SELECT o FROM log_start)
     ORDER BY b.last_offset
     LIMIT 1))
