-- Topics with a retention limit set: id, partitions, retention.ms, retention.bytes
-- (-1 where not set). Retention applies where cleanup.policy contains delete (its
-- default); a topic that only compacts keeps its messages however old.
SELECT t.id, t.partitions,
       coalesce((SELECT c.value::bigint FROM kafka.topic_configs c WHERE c.topic_id = t.id AND c.name = 'retention.ms'), -1),
       coalesce((SELECT c.value::bigint FROM kafka.topic_configs c WHERE c.topic_id = t.id AND c.name = 'retention.bytes'), -1)
FROM kafka.topics t
WHERE EXISTS (SELECT 1 FROM kafka.topic_configs c
              WHERE c.topic_id = t.id AND c.name IN ('retention.ms', 'retention.bytes') AND c.value <> '-1')
  AND NOT EXISTS (SELECT 1 FROM kafka.topic_configs c
                  WHERE c.topic_id = t.id AND c.name = 'cleanup.policy'
                    AND NOT 'delete' = ANY (pg_catalog.string_to_array(pg_catalog.replace(c.value, ' ', ''), ',')))
ORDER BY t.id
