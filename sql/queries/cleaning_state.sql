-- A compacted partition's cleaner state; reached_at as ms since the Unix epoch.
SELECT cleaned_to, clean_bytes, reached_offsets,
       ARRAY(SELECT (extract(epoch FROM t) * 1000)::bigint FROM unnest(reached_at) WITH ORDINALITY AS u(t, i) ORDER BY i),
       (extract(epoch FROM last_pass) * 1000)::bigint, last_removed, removed_total, round_end, walked_to
FROM kafka.partition_cleaning
WHERE topic_id = $1 AND partition = $2
