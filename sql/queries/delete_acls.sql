DELETE FROM kafka.acls a
USING unnest($1::smallint[], $2::text[], $3::smallint[], $4::text[], $5::text[], $6::smallint[], $7::smallint[])
      AS d(resource_type, resource_name, pattern_type, principal, host, operation, permission)
WHERE (a.resource_type, a.resource_name, a.pattern_type, a.principal, a.host, a.operation, a.permission)
    = (d.resource_type, d.resource_name, d.pattern_type, d.principal, d.host, d.operation, d.permission)
