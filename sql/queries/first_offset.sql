SELECT greatest(
    (SELECT min("offset") FROM kafka.messages WHERE topic_id = $1 AND partition = $2),
    (SELECT log_start_offset FROM kafka.partition_starts WHERE topic_id = $1 AND partition = $2))
