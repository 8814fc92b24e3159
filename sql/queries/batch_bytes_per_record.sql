-- Stored bytes per record of a batch-layout partition, from its newest 100 batches (a
-- bounded sample: DescribeLogDirs sizes partitions without scanning them). NULL: none.
SELECT sum(octet_length(newest.batch))::float8 / sum(newest.record_count)
FROM (SELECT b.batch, b.record_count FROM kafka.batches b
      WHERE b.topic_id = $1 AND b.partition = $2
      ORDER BY b.last_offset DESC
      LIMIT 100) AS newest
