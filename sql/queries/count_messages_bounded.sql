-- Rows of kafka.messages, counting at most $1 (a table never analyzed has no estimate).
SELECT count(*) FROM (SELECT FROM kafka.messages LIMIT $1) AS bounded
