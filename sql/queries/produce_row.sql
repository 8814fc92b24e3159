-- One message from kafka.produce(), its offset decided under the partition's append lock.
-- Kafka timestamps are milliseconds.
INSERT INTO kafka.messages (topic_id, partition, "offset", "timestamp", key, value, headers)
VALUES ($1, $2, $3, date_trunc('milliseconds', coalesce($4, clock_timestamp())), $5, $6, $7)
