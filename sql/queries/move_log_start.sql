-- Moves a partition's log start forward (never back): the second statement of a
-- DeleteRecords or retention pass, after delete_records.sql.
INSERT INTO kafka.partition_starts AS s (topic_id, partition, log_start_offset) VALUES ($1, $2, $3)
ON CONFLICT (topic_id, partition)
DO UPDATE SET log_start_offset = greatest(s.log_start_offset, excluded.log_start_offset)
