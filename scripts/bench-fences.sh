#!/usr/bin/env bash
# bench-fences.sh BIN [TILE38]: the README's geofenced-writes figure (issue
# 16 goal 1): server CPU per position update, HTTP POST /api/telemetry (500
# lines a body, 2 connections) into a fresh `BIN serve` (embedded store,
# NATS and broker), K square geofences of 100 m with enter/exit detection;
# and, when TILE38 (a tile38-server binary built apart from this repository)
# is given, the same walk as pipelined SETs with K SETCHAN fences into a
# fresh Tile38 (default settings), alternating system per K. twinload reads
# each server's CPU from /proc. Asserts nothing.
#   BENCH_FENCES="0 1000 10000" BENCH_ROUNDS=1 BENCH_DURATION=20s BENCH_OBJECTS=5000
#   BENCH_SERVE_ARGS="--feed-size 65536" adds flags to twin serve.
#   BENCH_SERVER_CPUS=0 BENCH_TOOL_CPUS=1 pin both servers and twinload
#   (taskset -c): each server then has a core of its own (GOMAXPROCS 1)
#   and the tool cannot take it, so the CPU per update is the server's
#   own, not a share of two cores the tool contends for (unpinned, the
#   same twin build varied 7.7-12.1 us per update between runs on the
#   2-core machine of 2026-12-05; pinned, 4.4-5.2).
set -euo pipefail
BIN=${1:?usage: bench-fences.sh path/to/twin [path/to/tile38-server]}
TILE38=${2:-}
GO=${GO:-go}
dir=$(mktemp -d /tmp/citytwin-fences-XXXXXX)
pid=
cleanup() {
	if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
	rm -rf "$dir"
}
trap cleanup EXIT INT TERM
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
"$GO" build -o "$dir/twinload" ./cmd/twinload
common=(-objects "${BENCH_OBJECTS:-5000}" -batch 500 -conns 2 -duration "${BENCH_DURATION:-20s}")

for round in $(seq 1 "${BENCH_ROUNDS:-1}"); do
	for k in ${BENCH_FENCES:-0 1000 10000}; do
		rm -rf "$dir/data" && mkdir -p "$dir/data"
		hp=$(port)
		# shellcheck disable=SC2086 # BENCH_SERVE_ARGS is a list of flags
		${BENCH_SERVER_CPUS:+taskset -c "$BENCH_SERVER_CPUS"} "$BIN" serve --listen "127.0.0.1:$hp" --mqtt-listen "127.0.0.1:$(port)" --data "$dir/data" --log-level warn ${BENCH_SERVE_ARGS:-} >"$dir/twin.log" 2>&1 &
		pid=$!
		for _ in $(seq 1 240); do curl -fsS "http://127.0.0.1:$hp/readyz" >/dev/null 2>&1 && break; sleep 0.5; done
		tok=$("$BIN" token --role admin --data "$dir/data" | awk '{print $NF}' | tail -1)
		echo "== round $round K=$k twin   ($(uptime | sed 's/.*load/load/'))"
		${BENCH_TOOL_CPUS:+taskset -c "$BENCH_TOOL_CPUS"} "$dir/twinload" -mode http -server "http://127.0.0.1:$hp" -token "$tok" -fences "$k" -pid "$pid" "${common[@]}" 
		kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
		if [ -n "$TILE38" ]; then
			rm -rf "$dir/t38" && mkdir -p "$dir/t38"
			tp=$(port)
			${BENCH_SERVER_CPUS:+taskset -c "$BENCH_SERVER_CPUS"} "$TILE38" -p "$tp" -d "$dir/t38" -q >"$dir/t38.log" 2>&1 &
			pid=$!
			sleep 1
			echo "== round $round K=$k tile38 ($(uptime | sed 's/.*load/load/'))"
			${BENCH_TOOL_CPUS:+taskset -c "$BENCH_TOOL_CPUS"} "$dir/twinload" -mode resp -resp "127.0.0.1:$tp" -fences "$k" -pid "$pid" "${common[@]}" 
			kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
		fi
	done
done
