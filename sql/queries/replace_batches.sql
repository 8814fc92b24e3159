-- Compaction: a batch-layout partition's batches (by last offset) replaced by what is left
-- of them ($4 batch, $5 record count, $6 max timestamp in ms).
UPDATE kafka.batches b
SET batch = u.batch, record_count = u.record_count, max_timestamp = 'epoch'::timestamptz + u.max_ms * interval '1 millisecond'
FROM unnest($3::bigint[], $4::bytea[], $5::integer[], $6::bigint[]) AS u(last_offset, batch, record_count, max_ms)
WHERE b.topic_id = $1 AND b.partition = $2 AND b.last_offset = u.last_offset
