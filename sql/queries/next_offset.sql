SELECT coalesce(max("offset"), -1) + 1 FROM kafka.messages WHERE topic_id = $1 AND partition = $2
