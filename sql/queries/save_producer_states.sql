-- One row per (producer, partition) a group commit touched; batches arrive as 2-D array
-- literals ('{{first_seq,last_seq,base_offset},...}') so one unnest carries them all.
INSERT INTO kafka.producer_state AS s (producer_id, topic_id, partition, producer_epoch, recent_batches)
SELECT p, t, n, e, b::bigint[]
FROM unnest($1::bigint[], $2::integer[], $3::integer[], $4::smallint[], $5::text[]) AS u(p, t, n, e, b)
ON CONFLICT (producer_id, topic_id, partition) DO UPDATE
SET producer_epoch = excluded.producer_epoch,
    recent_batches = excluded.recent_batches,
    updated_at = now()
