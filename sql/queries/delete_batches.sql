-- Compaction: deletes batches (by last offset) none of whose records survived.
DELETE FROM kafka.batches WHERE topic_id = $1 AND partition = $2 AND last_offset = ANY ($3)
