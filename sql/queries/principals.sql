-- Superuser flag and memberships of logged-in roles, refreshed with the ACLs.
SELECT a.rolname::text,
       a.rolsuper,
       array_to_string(ARRAY(SELECT r.rolname::text FROM pg_catalog.pg_roles r WHERE pg_catalog.pg_has_role(a.oid, r.oid, 'MEMBER')), chr(1))
FROM pg_catalog.pg_authid a
WHERE a.rolname = ANY($1)
