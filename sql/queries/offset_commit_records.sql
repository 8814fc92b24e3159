-- Committed offsets numbered in $1..$2, oldest first, at most $3: the records of
-- __consumer_offsets. Metadata as UTF-8 bytes, whichever column holds it.
SELECT o.commit_number, o.group_id, t.name, o.partition, o.committed_offset, o.leader_epoch,
       coalesce(pg_catalog.convert_to(o.metadata, 'UTF8'), o.metadata_bytes, ''::bytea),
       (pg_catalog.date_part('epoch', o.commit_time) * 1000)::bigint
FROM kafka.consumer_offsets o
JOIN kafka.topics t ON t.id = o.topic_id
WHERE o.commit_number >= $1 AND o.commit_number < $2
ORDER BY o.commit_number
LIMIT $3
