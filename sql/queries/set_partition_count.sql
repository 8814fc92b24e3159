UPDATE kafka.topics SET partitions = $2 WHERE id = $1
