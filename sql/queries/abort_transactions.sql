-- The ranges of transactions this group commit aborted.
INSERT INTO kafka.aborted_transactions (topic_id, partition, producer_id, first_offset, last_offset)
SELECT * FROM unnest($1::integer[], $2::integer[], $3::bigint[], $4::bigint[], $5::bigint[])
ON CONFLICT DO NOTHING
