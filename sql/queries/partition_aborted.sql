-- ... and the aborted ranges that reach into $3..$4.
SELECT producer_id, first_offset, last_offset FROM kafka.aborted_transactions
WHERE topic_id = $1 AND partition = $2 AND last_offset >= $3 AND first_offset < $4
ORDER BY last_offset
