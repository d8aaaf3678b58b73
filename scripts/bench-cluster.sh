#!/usr/bin/env bash
# bench-cluster.sh BIN: the README's "Running several servers" figures.
# Starts, in a temp directory, a nats-server with JetStream, a Mosquitto
# and a fresh PostGIS database (on the server of $BENCH_PG, default the
# local postgres@127.0.0.1:5432), then:
#   ingest 1: one `BIN serve` (--db, --nats, --mqtt), twinload against it;
#   ingest 2: the same with a second server of the twin on the same broker
#             (each server takes every message; the log stores it once);
#   failover: two servers, `twinbench -mode failover` kills the leader with
#             -9 and writes to the other until a write is accepted.
# Every run is between `uptime` lines (the load average is part of every
# figure). Prints the tools' reports; asserts nothing.
#   BENCH_TWINLOAD="-qos 1 -conns 4 -objects 5000 -rate 4000 -duration 20s -drain 30s"
#   BENCH_ONLY="ingest1 ingest2 failover"  BENCH_PG=postgres://postgres@127.0.0.1:5432/postgres
#   BENCH_SERVE_ARGS="--mqtt-share-group twin" (more serve flags)  BENCH_FAILOVER="-attempt-timeout 1s"
#   BENCH_KEEP=1 (keep the temp directory and its logs)  BENCH_LOG=info
set -euo pipefail
BIN=${1:?usage: bench-cluster.sh path/to/twin}
GO=${GO:-go}
TWINLOAD=${BENCH_TWINLOAD:--qos 1 -conns 4 -objects 5000 -rate 4000 -duration 20s -drain 30s}
ONLY=${BENCH_ONLY:-ingest1 ingest2 failover}
PG=${BENCH_PG:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}

dir=$(mktemp -d /tmp/citytwin-cluster-XXXXXX)
tools=$dir/tools
mkdir -p "$tools"
pids=()
db=
cleanup() {
	for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	if [ -n "$db" ]; then psql "$PG" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true; fi
	if [ -n "${BENCH_KEEP:-}" ]; then echo "kept $dir"; else rm -rf "$dir"; fi
}
trap cleanup EXIT INT TERM

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

echo "== building the tools"
for t in twinload twinbench; do "$GO" build -o "$tools/$t" "./cmd/$t"; done

nport=$(port)
nats-server -a 127.0.0.1 -p "$nport" -js -sd "$dir/nats" >"$dir/nats.log" 2>&1 &
pids+=($!)
NATS=nats://127.0.0.1:$nport
mport=$(port)
printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$mport" >"$dir/mosquitto.conf"
mosquitto -c "$dir/mosquitto.conf" >"$dir/mosquitto.log" 2>&1 &
pids+=($!)
MQTT=tcp://127.0.0.1:$mport
head -c 48 /dev/urandom >"$dir/auth.key"
sleep 1

# fresh_db creates an empty PostGIS database and sets DB to its URL.
fresh_db() {
	if [ -n "$db" ]; then psql "$PG" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null; fi
	db=twin_bench_$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')
	psql "$PG" -qc "CREATE DATABASE $db" >/dev/null
	DB=$(python3 -c 'import sys, urllib.parse as u; p=u.urlparse(sys.argv[1]); print(p._replace(path="/"+sys.argv[2]).geturl())' "$PG" "$db")
	psql "$DB" -qc "CREATE EXTENSION IF NOT EXISTS postgis" >/dev/null
}

# start NAME: one server of the twin; sets URL_NAME and PID_NAME.
start() {
	local name=$1 hport
	# shellcheck disable=SC2086 # BENCH_SERVE_ARGS is a list of flags
	hport=$(port)
	"$BIN" serve --listen "127.0.0.1:$hport" --data "$dir/data-$name-$RANDOM" --auth-key "$dir/auth.key" \
		--db "$DB" --nats "$NATS" --mqtt "$MQTT" --mqtt-client-id "bench-$name-$RANDOM" --mqtt-connections 4 \
		--log-level "${BENCH_LOG:-warn}" ${BENCH_SERVE_ARGS:-} >"$dir/server-$name.log" 2>&1 &
	local pid=$!
	pids+=($pid)
	for _ in $(seq 1 240); do
		if curl -fsS "http://127.0.0.1:$hport/readyz" >/dev/null 2>&1; then break; fi
		if ! kill -0 "$pid" 2>/dev/null; then echo "server $name exited:"; tail -20 "$dir/server-$name.log"; exit 1; fi
		sleep 0.5
	done
	printf -v "URL_$name" '%s' "http://127.0.0.1:$hport"
	printf -v "PID_$name" '%s' "$pid"
}

leads() { curl -fsS "$1/metrics" | grep -q '^twin_changelog_leader 1'; }

stop_all_servers() {
	for n in a b; do
		local v="PID_$n"
		if [ -n "${!v:-}" ]; then kill "${!v}" 2>/dev/null || true; wait "${!v}" 2>/dev/null || true; fi
		printf -v "PID_$n" '%s' ""
	done
}

TWIN_TOKEN=$("$BIN" token --role operator --region 500000 --auth-key "$dir/auth.key" | awk '{print $NF}' | tail -1)
export TWIN_TOKEN

run() {
	local name=$1; shift
	echo
	echo "== $name $*"
	echo "before: $(uptime)"
	timeout "${BENCH_TOOL_TIMEOUT:-600}" "$tools/$name" "$@" || echo "$name failed: $?"
	echo "after:  $(uptime)"
}

for what in $ONLY; do
	fresh_db
	case $what in
	ingest1 | ingest2)
		start a
		for _ in $(seq 1 60); do leads "$URL_a" && break; sleep 0.5; done
		if [ "$what" = ingest2 ]; then start b; fi
		echo; echo "== $what: $( [ "$what" = ingest2 ] && echo "two servers (leader $URL_a)" || echo "one server ($URL_a)")"
		# shellcheck disable=SC2086 # TWINLOAD is a list of flags
		run twinload -broker "$MQTT" -server "$URL_a" $TWINLOAD
		;;
	failover)
		start a
		for _ in $(seq 1 60); do leads "$URL_a" && break; sleep 0.5; done
		start b
		sleep 2
		run twinbench -mode failover -pid "$PID_a" -url "$URL_b" -duration 60s ${BENCH_FAILOVER:-}
		PID_a=
		;;
	esac
	stop_all_servers
done
