-- Moves the log start forward (never back) and deletes the rows below it.
WITH moved AS (
    INSERT INTO kafka.partition_starts AS s (topic_id, partition, log_start_offset) VALUES ($1, $2, $3)
    ON CONFLICT (topic_id, partition)
    DO UPDATE SET log_start_offset = greatest(s.log_start_offset, excluded.log_start_offset)
    RETURNING log_start_offset
)
DELETE FROM kafka.messages
WHERE topic_id = $1 AND partition = $2 AND "offset" < (SELECT log_start_offset FROM moved)
