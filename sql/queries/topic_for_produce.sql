-- The topic kafka.produce() writes to, locked FOR KEY SHARE until the producing
-- transaction ends, so the topic cannot be deleted under rows not yet committed.
SELECT t.id, t.name, t.topic_uuid, t.partitions,
       ARRAY(SELECT c.name || '=' || c.value FROM kafka.topic_configs c WHERE c.topic_id = t.id ORDER BY c.name),
       t.storage
FROM kafka.topics t
WHERE t.name = $1
FOR KEY SHARE OF t
