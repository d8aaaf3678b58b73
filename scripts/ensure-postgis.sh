#!/usr/bin/env bash
# Makes a PostgreSQL with PostGIS available for `make test`. Idempotent.
#  - TWIN_TEST_DB set: the caller chose a server; do nothing.
#  - local server on 127.0.0.1:5432 answers: install postgresql-<major>-postgis-3
#    with apt-get if the postgis extension is missing (root only).
#  - no server answers: start a throwaway cluster in ./var/pgtest on port 55432.
# Progress goes to stderr; stdout carries only `export TWIN_TEST_DB=...` lines
# for the Makefile to eval.
set -euo pipefail
log() { echo "ensure-postgis: $*" >&2; }

[ -n "${TWIN_TEST_DB:-}" ] && exit 0

q() { psql -h "$1" -p "$2" -U postgres -d postgres -Atqc "$3"; }

if pg_isready -q -h 127.0.0.1 -p 5432; then
  if [ "$(q 127.0.0.1 5432 "SELECT count(*) FROM pg_available_extensions WHERE name='postgis'")" = 1 ]; then
    exit 0
  fi
  major=$(q 127.0.0.1 5432 "SHOW server_version_num")
  major=$((major / 10000))
  pkg="postgresql-${major}-postgis-3"
  if [ "$(id -u)" != 0 ]; then
    log "PostGIS is missing on 127.0.0.1:5432; install it: sudo apt-get install -y $pkg"
    exit 1
  fi
  log "installing $pkg"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "$pkg" >&2 || { apt-get update -q >&2 && apt-get install -y -q "$pkg" >&2; }
  exit 0
fi

# No local server: a throwaway cluster owned by the invoking user (initdb
# refuses root, so root runs it as the postgres user).
dir="$PWD/var/pgtest"
port=55432
run=()
if [ "$(id -u)" = 0 ]; then run=(runuser -u postgres --); fi
if ! pg_isready -q -h 127.0.0.1 -p "$port"; then
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres "$dir"
  if [ ! -f "$dir/PG_VERSION" ]; then
    log "initdb $dir"
    "${run[@]}" initdb -D "$dir" -U postgres --auth=trust >&2
  fi
  log "starting throwaway PostgreSQL on 127.0.0.1:$port"
  "${run[@]}" pg_ctl -D "$dir" -l "$dir/log" -w -o "-p $port -k /tmp -c listen_addresses=127.0.0.1" start >&2
fi
echo "export TWIN_TEST_DB='postgres://postgres@127.0.0.1:${port}/postgres?sslmode=disable'"
