SELECT t.id, t.name, t.topic_uuid, t.partitions,
       ARRAY(SELECT c.name || '=' || c.value FROM kafka.topic_configs c WHERE c.topic_id = t.id ORDER BY c.name),
       t.storage
FROM kafka.topics t
ORDER BY t.name
