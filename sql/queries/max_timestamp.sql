SELECT "offset", "timestamp"
FROM kafka.messages
WHERE topic_id = $1 AND partition = $2
ORDER BY "timestamp" DESC, "offset"
LIMIT 1
