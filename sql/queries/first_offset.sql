-- A partition's first offset: its first row (or the first batch holding an offset) at or
-- after the log start (the index walk starts there, past the entries of rows deleted below
-- it that vacuum has not removed yet), or the log start when nothing is left. A batch the
-- log start is inside of starts the log at the log start.
WITH log_start AS (
    SELECT coalesce((SELECT log_start_offset FROM kafka.partition_starts WHERE topic_id = $1 AND partition = $2), 0) AS o
)
SELECT greatest(
    (SELECT min("offset") FROM kafka.messages
     WHERE topic_id = $1 AND partition = $2 AND "offset" >= (SELECT o FROM log_start)),
    (SELECT b.base_offset FROM kafka.batches b
     WHERE b.topic_id = $1 AND b.partition = $2 AND b.last_offset >= (SELECT o FROM log_start)
     ORDER BY b.last_offset LIMIT 1),
    (SELECT log_start_offset FROM kafka.partition_starts WHERE topic_id = $1 AND partition = $2))
