SELECT resource_type, resource_name, pattern_type, principal, host, operation, permission FROM kafka.acls
