SELECT id, name, topic_uuid, partitions FROM kafka.topics ORDER BY name
