-- The first message whose timestamp is at or after $3: a row, or a record of the first
-- batch whose largest timestamp reaches it (at or after the log start).
WITH log_start AS (
    SELECT coalesce((SELECT log_start_offset FROM kafka.partition_starts WHERE topic_id = $1 AND partition = $2), 0) AS o
)
SELECT "offset", "timestamp" FROM (
    (SELECT "offset", "timestamp"
     FROM kafka.messages
     WHERE topic_id = $1 AND partition = $2 AND "timestamp" >= $3
     ORDER BY "offset"
     LIMIT 1)
    UNION ALL
    (SELECT r."offset", r."timestamp"
     FROM (SELECT b.batch FROM kafka.batches b
           WHERE b.topic_id = $1 AND b.partition = $2 AND b.max_timestamp >= $3 AND b.last_offset >= (SELECT o FROM log_start)
           ORDER BY b.last_offset
           LIMIT 1) b
     CROSS JOIN LATERAL kafka.batch_records(b.batch) r
     WHERE r."timestamp" >= $3 AND r."offset" >= (SELECT o FROM log_start)
     ORDER BY r."offset"
     LIMIT 1)
) found
ORDER BY "offset"
LIMIT 1
