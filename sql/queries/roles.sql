-- What authentication and authorization need of the named roles: name, superuser flag,
-- every role each is a member of (itself included), password verifier, whether it may log
-- in, and when its password expires (Unix ms; 0 for -infinity, NULL for never).
SELECT a.rolname::text,
       a.rolsuper,
       array_to_string(ARRAY(SELECT r.rolname::text FROM pg_catalog.pg_roles r WHERE pg_catalog.pg_has_role(a.oid, r.oid, 'MEMBER')), chr(1)),
       a.rolpassword::text,
       a.rolcanlogin,
       CASE WHEN a.rolvaliduntil IS NULL OR a.rolvaliduntil = 'infinity' THEN NULL
            WHEN a.rolvaliduntil = '-infinity' THEN 0
            ELSE (extract(epoch FROM a.rolvaliduntil) * 1000)::bigint END
FROM pg_catalog.pg_authid a
WHERE a.rolname = ANY($1)
