SELECT min("offset") FROM kafka.messages WHERE topic_id = $1 AND partition = $2
