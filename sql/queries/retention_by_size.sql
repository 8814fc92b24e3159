-- The first offset to keep so the partition holds at most $3 payload bytes: newest rows
-- (or batches, by their size) first, a running sum, stop at the first that does not fit.
-- Reads what is kept, never below the log start nor below $4.
WITH log_start AS (
    SELECT coalesce((SELECT log_start_offset FROM kafka.partition_starts WHERE topic_id = $1 AND partition = $2), 0) AS o
)
SELECT max(first_kept) FROM (
    (SELECT "offset" + 1 AS first_kept
     FROM (
         SELECT "offset",
                sum(coalesce(octet_length(key), 0) + coalesce(octet_length(value), 0) + coalesce(octet_length(headers), 0))
                    OVER (ORDER BY "offset" DESC) AS kept_bytes
         FROM kafka.messages
         WHERE topic_id = $1 AND partition = $2 AND "offset" >= greatest((SELECT o FROM log_start), $4)
     ) newest_first
     WHERE kept_bytes > $3
     ORDER BY "offset" DESC
     LIMIT 1)
    UNION ALL
    (SELECT last_offset + 1
     FROM (
         SELECT last_offset, sum(octet_length(batch)) OVER (ORDER BY last_offset DESC) AS kept_bytes
         FROM kafka.batches
         WHERE topic_id = $1 AND partition = $2 AND last_offset >= greatest((SELECT o FROM log_start), $4)
     ) newest_first
     WHERE kept_bytes > $3
     ORDER BY last_offset DESC
     LIMIT 1)
) found
