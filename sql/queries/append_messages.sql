INSERT INTO kafka.messages (topic_id, partition, "offset", "timestamp", key, value, headers)
SELECT * FROM unnest($1::integer[], $2::integer[], $3::bigint[], $4::timestamptz[], $5::bytea[], $6::bytea[], $7::bytea[])
