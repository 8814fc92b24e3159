-- What SASL authentication needs of one role: its password verifier, whether it may log
-- in, when its password expires (Unix ms; 0 for -infinity, NULL for never), whether it is
-- a superuser, and every role it is a member of (itself included).
SELECT a.rolpassword::text,
       a.rolcanlogin,
       CASE WHEN a.rolvaliduntil IS NULL OR a.rolvaliduntil = 'infinity' THEN NULL
            WHEN a.rolvaliduntil = '-infinity' THEN 0
            ELSE (extract(epoch FROM a.rolvaliduntil) * 1000)::bigint END,
       a.rolsuper,
       array_to_string(ARRAY(SELECT r.rolname::text FROM pg_catalog.pg_roles r WHERE pg_catalog.pg_has_role(a.oid, r.oid, 'MEMBER')), chr(1))
FROM pg_catalog.pg_authid a
WHERE a.rolname = $1
