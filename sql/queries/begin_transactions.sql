-- Transactions that wrote their first records on a partition in this group commit.
INSERT INTO kafka.open_transactions (topic_id, partition, producer_id, first_offset)
SELECT * FROM unnest($1::integer[], $2::integer[], $3::bigint[], $4::bigint[])
ON CONFLICT DO NOTHING
