SELECT DISTINCT group_id FROM kafka.consumer_offsets ORDER BY group_id
