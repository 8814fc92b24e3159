-- The message with the largest timestamp, the earliest such: a row, or a record of the
-- batch with the largest timestamp.
SELECT "offset", "timestamp" FROM (
    (SELECT "offset", "timestamp"
     FROM kafka.messages
     WHERE topic_id = $1 AND partition = $2
     ORDER BY "timestamp" DESC, "offset"
     LIMIT 1)
    UNION ALL
    (SELECT r."offset", r."timestamp"
     FROM (SELECT b.batch, b.max_timestamp FROM kafka.batches b
           WHERE b.topic_id = $1 AND b.partition = $2
           ORDER BY b.max_timestamp DESC, b.last_offset
           LIMIT 1) b
     CROSS JOIN LATERAL kafka.batch_records(b.batch) r
     WHERE r."timestamp" = b.max_timestamp
     ORDER BY r."offset"
     LIMIT 1)
) found
ORDER BY "timestamp" DESC, "offset"
LIMIT 1
