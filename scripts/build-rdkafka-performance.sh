#!/usr/bin/env bash
# Builds librdkafka's own benchmark tool, examples/rdkafka_performance.c, from the
# librdkafka source that the rdkafka-sys crate (the bench's client library) ships, so the
# tool and the Rust client are the same librdkafka version. Usage: OUT_DIR; prints the
# binary's path. Skips the build when the binary is already there (about a minute).
set -euo pipefail
out=$(realpath -m "${1:?usage: build-rdkafka-performance.sh OUT_DIR}")
binary="$out/rdkafka_performance"
if [ -x "$binary" ]; then
  echo "$binary"
  exit 0
fi
cd "$(dirname "$0")/.."
cargo fetch --manifest-path bench/Cargo.toml >&2
manifest=$(cargo metadata --format-version 1 --manifest-path bench/Cargo.toml |
  python3 -c 'import json, sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"] == "rdkafka-sys"))')
rm -rf "$out/src"
mkdir -p "$out"
cp -r "$(dirname "$manifest")/librdkafka" "$out/src"
cd "$out/src"
./configure --disable-gssapi --disable-lz4-ext > "$out/configure.log" 2>&1 || { cat "$out/configure.log" >&2; exit 1; }
make -j"$(nproc)" libs > "$out/make.log" 2>&1 || { tail -40 "$out/make.log" >&2; exit 1; }
libs=$(sed -n 's/^LIBS+=//p' Makefile.config | tr '\n' ' ')
# shellcheck disable=SC2086 # the libraries are separate words
cc -O2 -Isrc examples/rdkafka_performance.c -o "$binary" src/librdkafka.a $libs -lm -lpthread
echo "$binary"
