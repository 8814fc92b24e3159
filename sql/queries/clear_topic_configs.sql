DELETE FROM kafka.topic_configs WHERE topic_id = $1
