#!/usr/bin/env bash
# bench-mqtt.sh BIN: the README's MQTT ingest figures through a real broker
# (issue 13 item 5, issue 16 goal 2). One `BIN serve` as `make run` starts it
# (embedded NATS JetStream log, embedded store) takes telemetry from a
# Mosquitto of its own with default settings (only a listener on a free
# port) over MQTT 5 subscriber connections (or nats-server's MQTT: below);
# twinload registers the vehicles, publishes QoS 1 (each message counted
# once the broker PUBACKs it) and reads the server's counters until it has
# caught up. Prints twinload's report, then the CPU seconds the server and
# the broker used over the whole run (from /proc,
# registration included) and per message published, and the server's peak and
# current RSS at the end (VmHWM, VmRSS). Asserts nothing.
#   BENCH_RATE=31000 BENCH_DURATION=20s BENCH_OBJECTS=5000
#   BENCH_PUB_CONNS=8 (publisher connections) BENCH_SUB_CONNS=4 (--mqtt-connections)
#   BENCH_TWINLOAD="-jump" (more twinload flags) BENCH_SERVE_ARGS="--pprof 127.0.0.1:6060"
#   BENCH_KEEP=1 (keep the temp directory and its logs)
#   BENCH_BROKER_CPUS=1 BENCH_SERVER_CPUS=0 BENCH_TOOL_CPUS=0: pin Mosquitto,
#     the server (or the broker-only subscribers) and twinload with taskset
#     (single-threaded Mosquitto on a core of its own)
#   BENCH_BROKER_NICE=-10: run Mosquitto at that nice level (its one thread
#     then gets the CPU first when the two cores are contended)
#   BENCH_BROKER_ONLY=1: no CityTwin server; BENCH_SUB_CONNS mosquitto_sub
#     clients share the subscription ($share/bench/twin/#, QoS 1, a 2-byte
#     line per message, counted as "delivered"): the broker's own ceiling on this machine, to set the
#     server's figure against (issue 16 goal 2: "when the broker allows it").
#   BENCH_BROKER=nats: the broker is nats-server's MQTT listener (nats-server
#     2.9+ from PATH, JetStream on, default settings) instead of Mosquitto.
#     It speaks MQTT 3.1.1 only and has no $share, so the server subscribes
#     with --mqtt-protocol 3 on one connection and the broker-only run has
#     one mosquitto_sub. It is multi-threaded: at QoS 0 (BENCH_TWINLOAD=
#     "-qos 0") it routes a message in a few us where Mosquitto's one thread
#     takes 10-30; QoS 1 it stores in a JetStream stream (slower).
set -euo pipefail
BIN=${1:?usage: bench-mqtt.sh path/to/twin}
GO=${GO:-go}
RATE=${BENCH_RATE:-31000}
DURATION=${BENCH_DURATION:-20s}
OBJECTS=${BENCH_OBJECTS:-5000}
PUB=${BENCH_PUB_CONNS:-8}
SUB=${BENCH_SUB_CONNS:-4}

dir=$(mktemp -d /tmp/citytwin-mqtt-XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	if [ -n "${BENCH_KEEP:-}" ]; then echo "kept $dir"; else rm -rf "$dir"; fi
}
trap cleanup EXIT INT TERM

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# cpu PID: the process's CPU seconds so far (user + system).
cpu() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14+$15)/hz}' "/proc/$1/stat"; }

"$GO" build -o "$dir/twinload" ./cmd/twinload

mport=$(port)
BROKER=${BENCH_BROKER:-mosquitto}
filter='$share/bench/twin/#'
case "$BROKER" in
mosquitto)
	printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$mport" >"$dir/mosquitto.conf"
	${BENCH_BROKER_NICE:+nice -n "$BENCH_BROKER_NICE"} ${BENCH_BROKER_CPUS:+taskset -c "$BENCH_BROKER_CPUS"} mosquitto -c "$dir/mosquitto.conf" >"$dir/mosquitto.log" 2>&1 &
	;;
nats)
	printf 'server_name: bench\nlisten: 127.0.0.1:%s\njetstream { store_dir: "%s" }\nmqtt { listen: 127.0.0.1:%s }\n' \
		"$(port)" "$dir/nats" "$mport" >"$dir/nats.conf"
	${BENCH_BROKER_NICE:+nice -n "$BENCH_BROKER_NICE"} ${BENCH_BROKER_CPUS:+taskset -c "$BENCH_BROKER_CPUS"} nats-server -c "$dir/nats.conf" >"$dir/nats.log" 2>&1 &
	filter='twin/#' SUB=1
	BENCH_SERVE_ARGS="--mqtt-protocol 3 ${BENCH_SERVE_ARGS:-}"
	;;
*)
	echo "BENCH_BROKER must be mosquitto or nats" >&2
	exit 2
	;;
esac
mpid=$!
pids+=("$mpid")
# The broker listening before anything connects to it.
for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/127.0.0.1/$mport") 2>/dev/null && break; sleep 0.1; done
case "$BROKER" in
mosquitto) echo "broker: $(mosquitto -h 2>&1 | head -1)" ;;
nats) echo "broker: $(nats-server --version) (MQTT listener)" ;;
esac
if [ -n "${BENCH_BROKER_ONLY:-}" ]; then
	subs=()
	for k in $(seq 1 "$SUB"); do
		${BENCH_SERVER_CPUS:+taskset -c "$BENCH_SERVER_CPUS"} mosquitto_sub -h 127.0.0.1 -p "$mport" -q 1 -i "bench-sub-$k" -t "$filter" -F x >"$dir/sub-$k.out" 2>>"$dir/sub.log" &
		subs+=("$!")
		pids+=("$!")
	done
	sleep 1
	# A subscriber that went away (keepalive lapsed on a saturated machine)
	# is left out and reported.
	subcpu() {
		local t=0
		for p in "${subs[@]}"; do
			if [ -r "/proc/$p/stat" ]; then t=$(awk -v t="$t" -v c="$(cpu "$p")" 'BEGIN {print t+c}'); else echo "subscriber $p exited" >&2; fi
		done
		echo "$t"
	}
	b0=$(subcpu); m0=$(cpu "$mpid")
	echo "== broker only: twinload -qos 1 -conns $PUB -objects $OBJECTS -rate $RATE -duration $DURATION ${BENCH_TWINLOAD:-}; $SUB mosquitto_sub"
	echo "before: $(uptime)"
	# shellcheck disable=SC2086 # BENCH_TWINLOAD is a list of flags
	${BENCH_TOOL_CPUS:+taskset -c "$BENCH_TOOL_CPUS"} "$dir/twinload" -broker "tcp://127.0.0.1:$mport" -server none -qos 1 -conns "$PUB" \
		-objects "$OBJECTS" -rate "$RATE" -duration "$DURATION" ${BENCH_TWINLOAD:-} | tee "$dir/report.txt"
	echo "after:  $(uptime)"
	# What the subscribers got (one "x" line per message): at QoS 0 a
	# broker may take a message and drop it for a slow subscriber.
	got=-1
	for _ in $(seq 1 30); do
		sleep 1
		g=$(cat "$dir"/sub-*.out | wc -l)
		[ "$g" = "$got" ] && break
		got=$g
	done
	b1=$(subcpu); m1=$(cpu "$mpid")
	n=$(awk '/^published/ {print $2}' "$dir/report.txt")
	echo "delivered    $got of $n published, to $SUB subscriber(s)"
	awk -v b="$b0" -v B="$b1" -v m="$m0" -v M="$m1" -v n="$n" 'BEGIN {
		printf "broker CPU   %.2f s (%.1f us per message)\n", M-m, (M-m)*1e6/n
		printf "subscribers  %.2f s (%.1f us per message)\n", B-b, (B-b)*1e6/n
	}'
	exit 0
fi
head -c 48 /dev/urandom >"$dir/auth.key"
hport=$(port)
# shellcheck disable=SC2086 # BENCH_SERVE_ARGS is a list of flags
${BENCH_SERVER_CPUS:+taskset -c "$BENCH_SERVER_CPUS"} "$BIN" serve --listen "127.0.0.1:$hport" --data "$dir/data" --auth-key "$dir/auth.key" \
	--mqtt "tcp://127.0.0.1:$mport" --mqtt-connections "$SUB" --log-level warn ${BENCH_SERVE_ARGS:-} >"$dir/server.log" 2>&1 &
spid=$!
pids+=("$spid")
for _ in $(seq 1 240); do
	if curl -fsS "http://127.0.0.1:$hport/readyz" >/dev/null 2>&1; then break; fi
	if ! kill -0 "$spid" 2>/dev/null; then echo "server exited:"; tail -20 "$dir/server.log"; exit 1; fi
	sleep 0.5
done
TWIN_TOKEN=$("$BIN" token --role operator --region 500000 --auth-key "$dir/auth.key" | awk '{print $NF}' | tail -1)
export TWIN_TOKEN

s0=$(cpu "$spid"); m0=$(cpu "$mpid")
echo "== twinload -qos 1 -conns $PUB -objects $OBJECTS -rate $RATE -duration $DURATION ${BENCH_TWINLOAD:-}; server --mqtt-connections $SUB ${BENCH_SERVE_ARGS:-}"
echo "before: $(uptime)"
# shellcheck disable=SC2086 # BENCH_TWINLOAD is a list of flags
${BENCH_TOOL_CPUS:+taskset -c "$BENCH_TOOL_CPUS"} "$dir/twinload" -broker "tcp://127.0.0.1:$mport" -server "http://127.0.0.1:$hport" -qos 1 -conns "$PUB" \
	-objects "$OBJECTS" -rate "$RATE" -duration "$DURATION" -drain 60s ${BENCH_TWINLOAD:-} | tee "$dir/report.txt"
echo "after:  $(uptime)"
s1=$(cpu "$spid"); m1=$(cpu "$mpid")
n=$(awk '/^published/ {print $2}' "$dir/report.txt")
awk '/^VmHWM|^VmRSS/ {printf "server %s %.2f GB\n", $1, $2/1048576}' "/proc/$spid/status"
awk -v s="$s0" -v S="$s1" -v m="$m0" -v M="$m1" -v n="$n" 'BEGIN {
	printf "server CPU   %.2f s (%.1f us per message)\n", S-s, (S-s)*1e6/n
	printf "broker CPU   %.2f s (%.1f us per message)\n", M-m, (M-m)*1e6/n
}'
if grep -q 'level=ERROR' "$dir/server.log"; then echo "server errors:"; grep 'level=ERROR' "$dir/server.log" | cut -c1-300 | sort | uniq -c | head; fi
