SELECT "offset", "timestamp", key, value, headers
FROM kafka.messages
WHERE topic_id = $1 AND partition = $2 AND "offset" >= $3 AND "offset" < $4
ORDER BY "offset"
