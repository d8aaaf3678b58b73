#!/usr/bin/env bash
# bench-replicated.sh BIN [BIN2]: the change log on a three-node NATS
# cluster. Starts three nats-server (2.9+, from PATH) nodes clustered on
# loopback, one `BIN serve --nats ... --nats-replicas 3` with the embedded
# store, and drives it with cmd/twinload over HTTP at full speed (5,000
# objects, 500-line batches, 2 connections, BENCH_DURATION, default 15s).
# Prints the updates applied, the server's CPU per update, the three
# nodes' CPU per 1,000 updates (utime+stime from /proc), the change log's
# counters and the size of one node's JetStream directory. With BIN2 the
# two binaries alternate, BENCH_ROUNDS times (default 1), each on a fresh
# cluster. Asserts nothing.
set -euo pipefail
GO=${GO:-go}
bins=("$1")
if [ -n "${2:-}" ]; then bins+=("$2"); fi
dir=$(mktemp -d /tmp/citytwin-replicated-XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT INT TERM
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
ticks() { local n=0; for p in "$@"; do n=$((n + $(awk '{print $14+$15}' "/proc/$p/stat"))); done; echo "$n"; }
"$GO" build -o "$dir/twinload" ./cmd/twinload
hz=$(getconf CLK_TCK)
for round in $(seq 1 "${BENCH_ROUNDS:-1}"); do
	for bin in "${bins[@]}"; do
		run=$dir/run && rm -rf "$run" && mkdir -p "$run"
		cp=() && cl=() && routes=
		for i in 1 2 3; do cp+=("$(port)"); cl+=("$(port)"); done
		for i in 0 1 2; do routes+="${routes:+,}nats://127.0.0.1:${cl[$i]}"; done
		nodes=()
		for i in 0 1 2; do
			nats-server -a 127.0.0.1 -p "${cp[$i]}" -js -sd "$run/n$i" -n "n$i" --cluster_name bench \
				--cluster "nats://127.0.0.1:${cl[$i]}" --routes "$routes" >"$run/n$i.log" 2>&1 &
			nodes+=($!)
		done
		pids=("${nodes[@]}")
		sleep 3
		hp=$(port)
		"$bin" serve --listen "127.0.0.1:$hp" --mqtt-listen "127.0.0.1:$(port)" --data "$run/data" \
			--nats "nats://127.0.0.1:${cp[0]}" --nats-replicas 3 --log-level warn >"$run/twin.log" 2>&1 &
		pid=$!
		pids+=("$pid")
		for _ in $(seq 1 240); do curl -fsS "http://127.0.0.1:$hp/readyz" >/dev/null 2>&1 && break; sleep 0.5; done
		tok=$("$bin" token --role admin --data "$run/data" | awk '{print $NF}' | tail -1)
		echo "== round $round $bin ($(uptime | sed 's/.*load/load/'))"
		n0=$(ticks "${nodes[@]}")
		"$dir/twinload" -mode http -server "http://127.0.0.1:$hp" -token "$tok" -objects 5000 -batch 500 -conns 2 \
			-duration "${BENCH_DURATION:-15s}" -pid "$pid" | tee "$run/load.txt" | grep -E "updates|server cpu"
		n1=$(ticks "${nodes[@]}")
		upd=$(awk '/^updates/{print $2}' "$run/load.txt")
		awk -v t=$((n1 - n0)) -v hz="$hz" -v u="$upd" 'BEGIN{printf "nats cpu     %.2f s for the three nodes: %.2f ms per 1,000 updates\n", t/hz, 1000*t/hz/u*1000}'
		curl -fsS "http://127.0.0.1:$hp/metrics" | grep -E "^twin_changelog_(published_total|terms_total|rewound_total)" || true
		echo "jetstream    $(du -sm "$run/n0/jetstream" | cut -f1) MB on one node"
		for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
		wait 2>/dev/null || true
		pids=()
	done
done
