INSERT INTO kafka.topics (name, partitions, storage) VALUES ($1, $2, $3)
ON CONFLICT (name) DO NOTHING
RETURNING id, name, topic_uuid, partitions, NULL::text, storage
