-- Deletes the rows between the log start and a new one (the first of two statements:
-- the rows first, so that the partition's kafka.partition_starts row is locked only at
-- the end of a transaction that may delete millions of rows). Below the log start no row
-- is left (the statement that moved it deleted them), only index entries vacuum has not
-- removed yet: the scan starts past them. Batches go when all their records are below
-- the new start; one the start is inside of stays (Kafka keeps it too).
WITH batches AS (
    DELETE FROM kafka.batches
    WHERE topic_id = $1 AND partition = $2 AND last_offset < $3
      AND last_offset >= coalesce((SELECT log_start_offset FROM kafka.partition_starts WHERE topic_id = $1 AND partition = $2), 0)
)
DELETE FROM kafka.messages
WHERE topic_id = $1 AND partition = $2 AND "offset" < $3
  AND "offset" >= coalesce((SELECT log_start_offset FROM kafka.partition_starts WHERE topic_id = $1 AND partition = $2), 0)
