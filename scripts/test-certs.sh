#!/usr/bin/env bash
# Writes a throwaway CA, a server certificate for 127.0.0.1/localhost and a client
# certificate (CN=cert_user) into DIR, for the TLS end-to-end tests. Reuses what exists.
#
#   scripts/test-certs.sh DIR
set -euo pipefail
dir=${1:?usage: test-certs.sh DIR}
mkdir -p "$dir"
cd "$dir"
if [ -f client.crt ]; then exit 0; fi
quiet() { "$@" >/dev/null 2>&1 || { echo "test-certs: $* failed" >&2; "$@"; exit 1; }; }
quiet openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=pg_kafka test CA" -keyout ca.key -out ca.crt \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
issue() { # name CN extensions
    quiet openssl req -newkey rsa:2048 -nodes -subj "/CN=$2" -keyout "$1.key" -out "$1.csr"
    printf '%s\n' "$3" > "$1.ext"
    quiet openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -out "$1.crt" -extfile "$1.ext"
    rm -f "$1.csr" "$1.ext"
}
issue server localhost "subjectAltName=DNS:localhost,IP:127.0.0.1
extendedKeyUsage=serverAuth"
issue client cert_user "extendedKeyUsage=clientAuth"
chmod 600 ./*.key
