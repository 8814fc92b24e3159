-- The first offset whose timestamp is inside retention ($3 = oldest kept), walking the
-- primary key from the log start: reads the rows that expire, plus one.
SELECT min("offset") FROM kafka.messages
WHERE topic_id = $1 AND partition = $2 AND "timestamp" >= $3
