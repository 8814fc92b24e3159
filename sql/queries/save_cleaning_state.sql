-- Stores a compacted partition's cleaner state ($4: reached offsets, $5: when, ms).
INSERT INTO kafka.partition_cleaning AS c
    (topic_id, partition, cleaned_to, clean_bytes, reached_offsets, reached_at, last_pass, last_removed, removed_total,
     round_end, walked_to)
VALUES ($1, $2, $3, $6, $4,
        ARRAY(SELECT 'epoch'::timestamptz + ms * interval '1 millisecond' FROM unnest($5::bigint[]) WITH ORDINALITY AS u(ms, i) ORDER BY i),
        'epoch'::timestamptz + $7 * interval '1 millisecond', $8, $9, $10, $11)
ON CONFLICT (topic_id, partition) DO UPDATE SET
    cleaned_to = excluded.cleaned_to, clean_bytes = excluded.clean_bytes, reached_offsets = excluded.reached_offsets,
    reached_at = excluded.reached_at, last_pass = excluded.last_pass, last_removed = excluded.last_removed,
    removed_total = excluded.removed_total, round_end = excluded.round_end, walked_to = excluded.walked_to
