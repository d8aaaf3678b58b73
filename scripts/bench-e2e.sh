#!/usr/bin/env bash
# bench-e2e.sh BIN: the end-to-end benchmarks of the README against a fresh
# server: BIN serve --demo (embedded store, broker and NATS in a temp
# directory, no simulated telemetry), then cmd/tileload, cmd/twinload and
# cmd/wsload with the settings the README quotes, each run between
# `uptime` lines (the load average is part of every figure). Prints the
# tools' reports; asserts nothing. The server runs without the websocket
# caps per token and per address (wsload's 200 clients share one token and
# one address; the default cap per token is 64). Ports and durations can be overridden:
#   BENCH_HTTP=127.0.0.1:18080 BENCH_MQTT=127.0.0.1:11883
#   BENCH_TWINLOAD="-objects 50000 -rate 50000 -duration 20s"
#   BENCH_WSLOAD="-clients 200 -rate 20000" BENCH_TILELOAD="-concurrency 32 -duration 10s"
#   BENCH_SCALE=1 (demo city scale)  BENCH_ONLY="tileload wsload twinload"
#   BENCH_TOOL_CPUS=1 pins the load tools to those CPUs (taskset -c), so
#   the tool does not take the server's core; BENCH_SERVER_CPUS likewise.
#   BENCH_PPROF=127.0.0.1:6060 serves the server's Go profiles there.
#   BENCH_TRACE=FILE (with BENCH_PPROF) writes a 2 s runtime trace of the
#   server there, taken BENCH_TRACE_AFTER seconds (8) into each tool's run
#   (wsload publishes from about 3 s in); `go run ./cmd/tracestat FILE`
#   says who waited for the core and which runs held it.
#   BENCH_SERVER_LOG=FILE keeps the server's log (stderr included, e.g.
#   with GODEBUG=gctrace=1 in the environment) there after the run.
#   BENCH_TMP=/dev/shm puts the server's data directory (store, NATS)
#   there instead of /tmp, e.g. on tmpfs to see the disk's share.
#   BENCH_SERVE_ARGS="--ws-flush-interval 20ms" adds flags to twin serve (as
#   in bench-mqtt.sh and bench-cluster.sh; BENCH_SERVER_ARGS is read too).
#   BENCH_RT=1 runs the server and the tools at real-time priority
#   (chrt -f 10, root only), so other jobs on a shared machine (builds,
#   tests) run only when they are idle: latencies then are the server's,
#   not the neighbours'. Say so next to any figure measured that way.
#   Never with GOMAXPROCS above the CPUs the server is pinned to: Go's
#   spinning threads at FIFO priority on one CPU starve each other (a
#   server with GOMAXPROCS=2 on one CPU never got ready). On one CPU at
#   FIFO priority Go's sysmon cannot run while a goroutine does, so
#   goroutines are not preempted after 10 ms (a trace showed the store
#   writer's commit run 61 ms in one slice): tails measured so are an
#   upper bound of a quiet machine's.
#   BENCH_MOSQUITTO=1 starts a Mosquitto of its own (default settings, a
#   listener on the BENCH_MQTT address) and runs the server with --mqtt
#   against it instead of the embedded broker.
# Each tool's run also prints the server's CPU time over it (utime+stime
# from /proc, all threads): divided by the messages the tool published it
# is the server's CPU per message, a figure that holds up on a busy machine
# where latencies do not.
set -euo pipefail
BIN=${1:?usage: bench-e2e.sh path/to/twin}
GO=${GO:-go}
HTTP=${BENCH_HTTP:-127.0.0.1:18080}
MQTT=${BENCH_MQTT:-127.0.0.1:11883}
TWINLOAD=${BENCH_TWINLOAD:--objects 50000 -rate 50000 -duration 20s}
WSLOAD=${BENCH_WSLOAD:--clients 200 -rate 20000}
TILELOAD=${BENCH_TILELOAD:--concurrency 32 -duration 10s}
SCALE=${BENCH_SCALE:-1}
# twinload last: a server still draining its backlog would skew the others.
ONLY=${BENCH_ONLY:-tileload wsload twinload}

dir=$(mktemp -d "${BENCH_TMP:-/tmp}/citytwin-bench-XXXXXX")
tools=$dir/tools
mkdir -p "$tools"
pid=
# stop PID: SIGTERM, then SIGKILL if it has not exited within 20 s (a
# server that cannot shut down must not keep its core, least of all at
# real-time priority).
stop() {
	kill "$1" 2>/dev/null || return 0
	for _ in $(seq 1 200); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
	kill -9 "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}
cleanup() {
	if [ -n "$pid" ]; then stop "$pid"; fi
	if [ -n "${mpid:-}" ]; then kill "$mpid" 2>/dev/null || true; wait "$mpid" 2>/dev/null || true; fi
	if [ -n "${BENCH_SERVER_LOG:-}" ]; then cp "$dir/server.log" "$BENCH_SERVER_LOG" 2>/dev/null || true; fi
	rm -rf "$dir"
}
trap cleanup EXIT INT TERM

echo "== building the load tools"
for t in tileload twinload wsload; do "$GO" build -o "$tools/$t" "./cmd/$t"; done

brokerArgs=(--mqtt-listen "$MQTT")
mpid=
if [ -n "${BENCH_MOSQUITTO:-}" ]; then
	printf 'listener %s %s\nallow_anonymous true\n' "${MQTT##*:}" "${MQTT%:*}" >"$dir/mosquitto.conf"
	mosquitto -c "$dir/mosquitto.conf" >"$dir/mosquitto.log" 2>&1 &
	mpid=$!
	for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/${MQTT%:*}/${MQTT##*:}") 2>/dev/null && break; sleep 0.1; done
	brokerArgs=(--mqtt "tcp://$MQTT")
	echo "== Mosquitto $(mosquitto -h 2>/dev/null | head -1 | awk '{print $3}') on $MQTT"
fi
echo "== starting $BIN serve --demo --scale $SCALE --sim-rate 0 on $HTTP (MQTT $MQTT), data in $dir"
rt=()
if [ -n "${BENCH_RT:-}" ]; then rt=(chrt -f 10); fi
SERVE_ARGS=${BENCH_SERVE_ARGS:-${BENCH_SERVER_ARGS:-}}
# shellcheck disable=SC2086 # SERVE_ARGS is a list of flags
"${rt[@]}" ${BENCH_SERVER_CPUS:+taskset -c "$BENCH_SERVER_CPUS"} "$BIN" serve --demo --scale "$SCALE" --sim-rate 0 --listen "$HTTP" "${brokerArgs[@]}" \
	--data "$dir/data" --log-level warn --ws-max-per-principal -1 --ws-max-per-ip -1 ${BENCH_PPROF:+--pprof "$BENCH_PPROF"} ${SERVE_ARGS} >"$dir/server.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do
	if curl -fsS "http://$HTTP/readyz" >/dev/null 2>&1; then break; fi
	if ! kill -0 "$pid" 2>/dev/null; then echo "server exited:"; tail -20 "$dir/server.log"; exit 1; fi
	sleep 0.5
done
curl -fsS "http://$HTTP/readyz" >/dev/null || { echo "server not ready after 300 s"; tail -20 "$dir/server.log"; exit 1; }
TWIN_TOKEN=$(curl -fsS "http://$HTTP/api/demo/token?role=admin" | sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
export TWIN_TOKEN

# cpu prints the server's utime+stime in seconds.
cpu() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14+$15)/hz}' "/proc/$pid/stat"; }
run() {
	local name=$1; shift
	echo
	echo "== $name $*"
	echo "before: $(uptime)"
	local c0; c0=$(cpu)
	if [ -n "${BENCH_TRACE:-}" ] && [ -n "${BENCH_PPROF:-}" ]; then
		(sleep "${BENCH_TRACE_AFTER:-8}" && curl -fsS "http://$BENCH_PPROF/debug/pprof/trace?seconds=2" >"$BENCH_TRACE" &&
			echo "runtime trace in $BENCH_TRACE: go run ./cmd/tracestat $BENCH_TRACE") &
	fi
	# A tool that hangs (e.g. a websocket dial refused without an answer)
	# must not hang the run.
	"${rt[@]}" ${BENCH_TOOL_CPUS:+taskset -c "$BENCH_TOOL_CPUS"} timeout "${BENCH_TOOL_TIMEOUT:-900}" "$tools/$name" "$@" || echo "$name failed: $?"
	echo "after:  $(uptime)"
	echo "server CPU during $name: $(awk -v a="$c0" -v b="$(cpu)" 'BEGIN{printf "%.2f", b-a}') s"
}
for t in $ONLY; do
	case $t in
	tileload) # shellcheck disable=SC2086
		run tileload -server "http://$HTTP" $TILELOAD ;;
	twinload) # shellcheck disable=SC2086
		run twinload -server "http://$HTTP" -broker "tcp://$MQTT" $TWINLOAD ;;
	wsload) # shellcheck disable=SC2086
		run wsload -server "http://$HTTP" -broker "tcp://$MQTT" $WSLOAD ;;
	*) echo "unknown tool $t" ;;
	esac
done
echo
echo "== server RSS: $(ps -o rss= -p "$pid" | awk '{printf "%.0f MB", $1/1024}')"
