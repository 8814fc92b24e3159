-- The first offset to keep so the partition holds at most $3 payload bytes: newest rows
-- first, a running sum, stop at the first row that does not fit. Reads the kept rows
-- (and never below the log start).
SELECT "offset" + 1
FROM (
    SELECT "offset",
           sum(coalesce(octet_length(key), 0) + coalesce(octet_length(value), 0) + coalesce(octet_length(headers), 0))
               OVER (ORDER BY "offset" DESC) AS kept_bytes
    FROM kafka.messages
    WHERE topic_id = $1 AND partition = $2 AND "offset" >= coalesce((SELECT log_start_offset FROM kafka.partition_starts WHERE topic_id = $1 AND partition = $2), 0)
) newest_first
WHERE kept_bytes > $3
ORDER BY "offset" DESC
LIMIT 1
