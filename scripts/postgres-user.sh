# Sourced by the scripts that run clusters: Postgres refuses to run as root, so clusters
# belong to the postgres user.

# Runs "$@" as the postgres user.
as_postgres() {
    if [ "$(id -un)" = postgres ]; then "$@"; else runuser -u postgres -- "$@"; fi
}

# Gives directory $1 to the postgres user (mode 0700), who must also be able to reach it
# through every parent.
give_to_postgres() {
    chown postgres:postgres "$1"
    chmod 700 "$1"
    local dir
    dir=$(dirname "$1")
    while [ "$dir" != / ]; do
        chmod o+x "$dir" 2>/dev/null || true
        dir=$(dirname "$dir")
    done
}
