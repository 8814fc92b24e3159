-- Compaction: deletes the rows at the given offsets of a row-layout partition.
DELETE FROM kafka.messages WHERE topic_id = $1 AND partition = $2 AND "offset" = ANY ($3)
