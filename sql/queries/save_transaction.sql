-- One transactional id's record, replacing the one stored. Times arrive as Kafka
-- milliseconds.
INSERT INTO kafka.transaction_state AS s (transactional_id, producer_id, producer_epoch, state, timeout_ms, topic_ids,
    partitions, groups, offset_groups, offset_topic_ids, offset_partitions, offsets, offset_leader_epochs, offset_metadata,
    started, updated)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,
        pg_catalog.to_timestamp($15::double precision OPERATOR(pg_catalog./) 1000),
        pg_catalog.to_timestamp($16::double precision OPERATOR(pg_catalog./) 1000))
ON CONFLICT (transactional_id) DO UPDATE
SET producer_id = excluded.producer_id,
    producer_epoch = excluded.producer_epoch,
    state = excluded.state,
    timeout_ms = excluded.timeout_ms,
    topic_ids = excluded.topic_ids,
    partitions = excluded.partitions,
    groups = excluded.groups,
    offset_groups = excluded.offset_groups,
    offset_topic_ids = excluded.offset_topic_ids,
    offset_partitions = excluded.offset_partitions,
    offsets = excluded.offsets,
    offset_leader_epochs = excluded.offset_leader_epochs,
    offset_metadata = excluded.offset_metadata,
    started = excluded.started,
    updated = excluded.updated
