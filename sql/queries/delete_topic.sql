-- The topic row goes (its configs, offsets, producer state and log starts cascade), and
-- so do its messages and batches, which have no foreign key (see schema.sql).
WITH gone AS (DELETE FROM kafka.topics WHERE id = $1 RETURNING id),
     batches AS (DELETE FROM kafka.batches WHERE topic_id IN (SELECT id FROM gone))
DELETE FROM kafka.messages WHERE topic_id IN (SELECT id FROM gone)
