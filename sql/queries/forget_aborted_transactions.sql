-- Aborted ranges that end below a partition's new log start: no read reaches them again.
DELETE FROM kafka.aborted_transactions
WHERE topic_id = $1 AND partition = $2 AND last_offset < $3
