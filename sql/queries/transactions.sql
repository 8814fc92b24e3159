-- Every transactional id's record (core/src/storage/transactions.rs: TxnRecord).
SELECT transactional_id, producer_id, producer_epoch, state, timeout_ms, topic_ids, partitions, groups,
       offset_groups, offset_topic_ids, offset_partitions, offsets, offset_leader_epochs,
       -- bytea[] elements as hex (NULL stays NULL): SPI hands arrays of text back whole.
       ARRAY(SELECT pg_catalog.encode(m, 'hex') FROM pg_catalog.unnest(offset_metadata) WITH ORDINALITY AS u(m, i) ORDER BY i),
       (pg_catalog.date_part('epoch', started) OPERATOR(pg_catalog.*) 1000)::bigint,
       (pg_catalog.date_part('epoch', updated) OPERATOR(pg_catalog.*) 1000)::bigint
FROM kafka.transaction_state
ORDER BY transactional_id
