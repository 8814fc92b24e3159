SELECT id, name, topic_uuid, partitions FROM kafka.topics WHERE name = $1
