-- The topic row goes (its configs, offsets, producer state and log starts cascade), and
-- so do its messages, which have no foreign key (see schema.sql).
WITH gone AS (DELETE FROM kafka.topics WHERE id = $1 RETURNING id)
DELETE FROM kafka.messages WHERE topic_id IN (SELECT id FROM gone)
