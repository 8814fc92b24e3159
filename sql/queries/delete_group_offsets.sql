DELETE FROM kafka.consumer_offsets WHERE group_id = ANY($1) RETURNING group_id
