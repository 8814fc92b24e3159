INSERT INTO kafka.consumer_offsets AS o
    (group_id, topic_id, partition, committed_offset, leader_epoch, metadata, commit_time)
SELECT $1, t, p, c, e, m, now()
FROM unnest($2::integer[], $3::integer[], $4::bigint[], $5::integer[], $6::text[]) AS u(t, p, c, e, m)
ON CONFLICT (group_id, topic_id, partition) DO UPDATE
SET committed_offset = excluded.committed_offset,
    leader_epoch = excluded.leader_epoch,
    metadata = excluded.metadata,
    commit_time = excluded.commit_time
