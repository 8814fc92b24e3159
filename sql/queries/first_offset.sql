-- A partition's first offset: its first row at or after the log start (the index walk
-- starts there, past the entries of rows deleted below it that vacuum has not removed
-- yet), or the log start when no row is left.
SELECT greatest(
    (SELECT min("offset") FROM kafka.messages
     WHERE topic_id = $1 AND partition = $2 AND "offset" >= coalesce((SELECT log_start_offset FROM kafka.partition_starts WHERE topic_id = $1 AND partition = $2), 0)),
    (SELECT log_start_offset FROM kafka.partition_starts WHERE topic_id = $1 AND partition = $2))
