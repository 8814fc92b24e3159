-- Transactions whose marker this group commit wrote on a partition.
DELETE FROM kafka.open_transactions o
USING unnest($1::integer[], $2::integer[], $3::bigint[]) AS e(topic_id, partition, producer_id)
WHERE o.topic_id OPERATOR(pg_catalog.=) e.topic_id
  AND o.partition OPERATOR(pg_catalog.=) e.partition
  AND o.producer_id OPERATOR(pg_catalog.=) e.producer_id
