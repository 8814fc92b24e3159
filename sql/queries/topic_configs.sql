SELECT name, value FROM kafka.topic_configs WHERE topic_id = $1 ORDER BY name
