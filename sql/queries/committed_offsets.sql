SELECT t.name, o.partition, o.committed_offset, o.leader_epoch, o.metadata, o.metadata_bytes
FROM kafka.consumer_offsets o
JOIN kafka.topics t ON t.id = o.topic_id
WHERE o.group_id = $1
ORDER BY t.name, o.partition
