INSERT INTO kafka.topic_configs (topic_id, name, value)
SELECT $1, n, v FROM unnest($2::text[], $3::text[]) AS u(n, v)
