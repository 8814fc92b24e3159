-- The first offset whose timestamp is inside retention ($3 = oldest kept), walking the
-- primary key from the log start: reads the rows that expire, plus one (not the index
-- entries of rows earlier passes deleted, which vacuum may not have removed yet).
SELECT min("offset") FROM kafka.messages
WHERE topic_id = $1 AND partition = $2 AND "timestamp" >= $3
  AND "offset" >= coalesce((SELECT log_start_offset FROM kafka.partition_starts WHERE topic_id = $1 AND partition = $2), 0)
