INSERT INTO kafka.acls (resource_type, resource_name, pattern_type, principal, host, operation, permission)
SELECT * FROM unnest($1::smallint[], $2::text[], $3::smallint[], $4::text[], $5::text[], $6::smallint[], $7::smallint[])
ON CONFLICT DO NOTHING
