DELETE FROM kafka.consumer_offsets
WHERE group_id = $1
  AND (topic_id, partition) IN (SELECT t, p FROM pg_catalog.unnest($2::integer[], $3::integer[]) AS wanted (t, p))
