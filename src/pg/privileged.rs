//! SQL run with more privilege than its caller, and the one `search_path` it runs with.
//!
//! Name resolution follows `search_path`: a role that can put a schema (or `pg_temp`) in
//! front of `pg_catalog` decides which `=` operator or `count()` function an unqualified
//! name means. Run as a superuser, that role's operator runs as the superuser. So every
//! place that raises privileges fixes the path first:
//!
//! - [`as_bootstrap_superuser`]: `kafka.produce()`'s table work, in the caller's backend,
//!   with the path set to [`SAFE_SEARCH_PATH`] for the switch's duration only (restored
//!   after it, or by the (sub)transaction's abort on an ERROR, as for a `SECURITY
//!   DEFINER` function with a `SET` clause);
//! - [`fix_session_search_path`]: the worker's and the readers' sessions (superuser),
//!   whose path would otherwise come from `ALTER DATABASE ... SET`, which a database
//!   owner who is not a superuser may run.
//!
//! With `pg_catalog` first and `pg_temp` last (explicitly, so that it is searched after
//! `pg_catalog` for relations and never for functions and operators), an unqualified
//! name can only mean a built-in; the extension's own objects are always written
//! `kafka.`-qualified.

use pgrx::pg_sys;

/// The `search_path` of every privileged statement.
pub const SAFE_SEARCH_PATH: &std::ffi::CStr = c"pg_catalog, pg_temp";

/// Runs `f` as the bootstrap superuser (the worker's role), in a restricted security
/// context and with [`SAFE_SEARCH_PATH`]. An ERROR inside is cleaned up by the
/// (sub)transaction's abort, which restores the user and the path.
pub fn as_bootstrap_superuser<R>(f: impl FnOnce() -> R) -> R {
    let (mut user, mut context) = (pg_sys::Oid::INVALID, 0);
    // SAFETY: reading and setting the current user and a GUC inside a transaction, as
    // fmgr_security_definer does for SECURITY DEFINER functions with SET clauses.
    let nest_level = unsafe {
        pg_sys::GetUserIdAndSecContext(&mut user, &mut context);
        let nest_level = pg_sys::NewGUCNestLevel();
        pg_sys::set_config_option(
            c"search_path".as_ptr(),
            SAFE_SEARCH_PATH.as_ptr(),
            pg_sys::GucContext::PGC_SUSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
        let restricted = (pg_sys::SECURITY_LOCAL_USERID_CHANGE | pg_sys::SECURITY_RESTRICTED_OPERATION) as i32;
        pg_sys::SetUserIdAndSecContext(pg_sys::Oid::from(pg_sys::BOOTSTRAP_SUPERUSERID), context | restricted);
        nest_level
    };
    let result = f();
    // SAFETY: as above; pops exactly the level pushed above.
    unsafe {
        pg_sys::SetUserIdAndSecContext(user, context);
        pg_sys::AtEOXact_GUC(true, nest_level);
    }
    result
}

/// Fixes this session's `search_path` to [`SAFE_SEARCH_PATH`] over whatever
/// `ALTER DATABASE` or `ALTER ROLE` set. The worker and the readers call it right after
/// connecting, before their first statement.
pub fn fix_session_search_path() {
    // SAFETY: setting a GUC at session level in a connected background worker.
    unsafe {
        pg_sys::SetConfigOption(
            c"search_path".as_ptr(),
            SAFE_SEARCH_PATH.as_ptr(),
            pg_sys::GucContext::PGC_SUSET,
            pg_sys::GucSource::PGC_S_OVERRIDE,
        );
    }
}
