-- A group's commits; metadata a text column cannot hold (NUL) goes to metadata_bytes.
INSERT INTO kafka.consumer_offsets AS o
    (group_id, topic_id, partition, committed_offset, leader_epoch, metadata, metadata_bytes, commit_time)
SELECT $1, t, p, c, e, m, mb, now()
FROM unnest($2::integer[], $3::integer[], $4::bigint[], $5::integer[], $6::text[], $7::bytea[]) AS u(t, p, c, e, m, mb)
ON CONFLICT (group_id, topic_id, partition) DO UPDATE
SET committed_offset = excluded.committed_offset,
    leader_epoch = excluded.leader_epoch,
    metadata = excluded.metadata,
    metadata_bytes = excluded.metadata_bytes,
    commit_time = excluded.commit_time
