-- Forgets a transactional id idle past pg_kafka.transactional_id_expiration_ms, as its
-- record was when it expired (a record stored since, by a new InitProducerId, stays).
DELETE FROM kafka.transaction_state
WHERE transactional_id = $1 AND producer_id = $2 AND producer_epoch = $3
  AND state IN ('Empty', 'CompleteCommit', 'CompleteAbort')
