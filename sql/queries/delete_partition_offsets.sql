DELETE FROM kafka.consumer_offsets
WHERE group_id = $1
  AND (topic_id, partition) IN (
      SELECT t, p FROM ROWS FROM (pg_catalog.unnest($2::integer[]), pg_catalog.unnest($3::integer[])) AS wanted (t, p))
