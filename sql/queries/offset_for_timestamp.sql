SELECT "offset", "timestamp"
FROM kafka.messages
WHERE topic_id = $1 AND partition = $2 AND "timestamp" >= $3
ORDER BY "offset"
LIMIT 1
