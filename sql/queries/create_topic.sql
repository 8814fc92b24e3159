INSERT INTO kafka.topics (name, partitions) VALUES ($1, $2)
ON CONFLICT (name) DO NOTHING
RETURNING id, name, topic_uuid, partitions, NULL::text
