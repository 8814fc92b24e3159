#!/usr/bin/env bash
# Builds PostgreSQL MAJOR from Debian's source package (the upstream tarball only) into
# PREFIX, for testing pg_kafka on majors Debian ships no binaries of for this machine.
# Skips everything when PREFIX already holds a build of that major.
#
#   scripts/build-postgres.sh MAJOR PREFIX
#
# Sources: 18 from Debian sid, 17 from Debian trixie (deb-src lines in a private apt
# configuration under target/, never the system's); 16 from PyPI's pgserver wheel (below).
set -euo pipefail
major=${1:?usage: build-postgres.sh MAJOR PREFIX}
prefix=${2:?usage: build-postgres.sh MAJOR PREFIX}

# PostgreSQL 16 has no source package in any Debian suite reachable here. PyPI's pgserver
# wheel (pinned) carries a whole 16.2 installation with its server headers and pg_config
# (pgserver/pginstall, relocatable). Its psql finds libpq in pgserver.libs beside it
# through $ORIGIN, so the wheel is unpacked whole into PREFIX-dist and PREFIX is a link to
# the installation inside. The wheel is kept in ~/.cache/pg_kafka.
if [ "$major" = 16 ]; then
    PGSERVER_VERSION=0.1.4
    if [ -x "$prefix/bin/pg_config" ] && "$prefix/bin/pg_config" --version | grep -q "PostgreSQL 16\."; then
        exit 0
    fi
    cache=${XDG_CACHE_HOME:-$HOME/.cache}/pg_kafka/pgserver-$PGSERVER_VERSION
    mkdir -p "$cache"
    if ! ls "$cache"/pgserver-"$PGSERVER_VERSION"-*.whl >/dev/null 2>&1; then
        echo "build-postgres: fetching PostgreSQL 16 from PyPI's pgserver $PGSERVER_VERSION wheel"
        python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 \
            --platform manylinux2014_x86_64 -d "$cache" "pgserver==$PGSERVER_VERSION"
    fi
    wheel=$(ls "$cache"/pgserver-"$PGSERVER_VERSION"-*.whl | head -n 1)
    dist=$prefix-dist
    rm -rf "$dist" "$prefix"
    mkdir -p "$dist"
    python3 -m zipfile -e "$wheel" "$dist"
    # Zip entries keep no modes: the postgres user must read everything and run the tools.
    chmod -R a+rX "$dist"
    chmod a+x "$dist"/pgserver/pginstall/bin/* "$dist"/pgserver.libs/*
    ln -s "$(basename "$dist")/pgserver/pginstall" "$prefix"
    "$prefix/bin/pg_config" --version
    exit 0
fi

mkdir -p "$prefix"
prefix=$(cd "$prefix" && pwd)

if [ -x "$prefix/bin/pg_config" ] && "$prefix/bin/pg_config" --version | grep -q "PostgreSQL $major\."; then
    exit 0
fi

# A build made on this machine before (another clone, say) is reused: PostgreSQL finds its
# files relative to its binaries, so the prefix can move.
cache=${XDG_CACHE_HOME:-$HOME/.cache}/pg_kafka/postgresql-$major.tar.gz
if [ -f "$cache" ]; then
    tar -xzf "$cache" -C "$prefix"
    if "$prefix/bin/pg_config" --version | grep -q "PostgreSQL $major\."; then
        echo "build-postgres: PostgreSQL $major from $cache"
        exit 0
    fi
fi

case "$major" in
    18) suite=sid ;;
    17) suite=trixie ;;
    *) echo "build-postgres: no source for PostgreSQL $major (have: 16 from pgserver, 17 from trixie, 18 from sid)" >&2; exit 2 ;;
esac

work=$(cd "$(dirname "$0")/.." && pwd)/target/pg-src
apt_dir=$work/apt
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
echo "deb-src http://deb.debian.org/debian $suite main" > "$apt_dir/sources.list"
apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
          -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache")
cd "$work"
if ! ls postgresql-"$major"_*.orig.tar.* >/dev/null 2>&1; then
    echo "build-postgres: fetching the postgresql-$major source package from Debian $suite"
    apt-get "${apt_opts[@]}" update -qq
    apt-get "${apt_opts[@]}" source --download-only "postgresql-$major" >/dev/null 2>&1 || true
fi
tarball=$(ls postgresql-"$major"_*.orig.tar.* 2>/dev/null | head -n 1)
if [ -z "$tarball" ]; then
    echo "build-postgres: Debian $suite has no downloadable postgresql-$major source" >&2
    exit 1
fi

echo "build-postgres: building $tarball into $prefix (takes several minutes)"
rm -rf "build-$major" && mkdir "build-$major"
tar -xf "$tarball" -C "build-$major" --strip-components=1
cd "build-$major"
# PostgreSQL's makefiles generate their headers (utils/errcodes.h, ...) only in the top-level
# make (MAKELEVEL 0, src/Makefile.global's submake-generated-headers). Run from `make setup`,
# this script inherits MAKELEVEL=1 and the build would stop at a missing errcodes.h: build
# as a make of its own.
unset MAKELEVEL MAKEFLAGS MFLAGS
./configure --prefix="$prefix" --without-icu --without-readline --with-openssl >configure.log 2>&1 \
    || { tail -n 30 configure.log; exit 1; }
make -j"$(nproc)" -s >make.log 2>&1 || { tail -n 40 make.log; exit 1; }
make -s install >install.log 2>&1 || { tail -n 30 install.log; exit 1; }
cd .. && rm -rf "build-$major"
mkdir -p "$(dirname "$cache")" && tar -czf "$cache" -C "$prefix" .
"$prefix/bin/pg_config" --version
