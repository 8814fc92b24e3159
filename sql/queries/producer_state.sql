SELECT producer_epoch, array_to_string(recent_batches, ',')
FROM kafka.producer_state
WHERE producer_id = $1 AND topic_id = $2 AND partition = $3
