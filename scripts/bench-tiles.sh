#!/usr/bin/env bash
# bench-tiles.sh BIN PG_TILESERV [PGURL]: the README's cold-tile figures
# (issue 16 goal 5), CityTwin against pg_tileserv on the same demo city,
# tiles and attributes, both over HTTP on loopback with a 64-unit buffer.
#   BIN          a twin binary (go build -o bin/twin ./cmd/twin)
#   PG_TILESERV  a pg_tileserv binary built apart from this repository
#                (github.com/CrunchyData/pg_tileserv; never built here)
#   PGURL        a PostgreSQL database of your own where PostGIS can be
#                created (default postgres://postgres@127.0.0.1:5432/tilecmp;
#                created, with PostGIS, when it does not exist); its tables
#                buildings, roads and bridges are replaced
# CityTwin: `BIN serve --demo --scale S --sim-rate 0` (embedded store and
# NATS); every request carries ?attrs= with the attributes pg_tileserv's
# tables hold plus zz{n}, an attribute no feature has that is new in every
# request, so each one misses the tile cache and is built, gzipped and
# hashed (the per-feature memos stay warm, as in service). pg_tileserv:
# `tileload -pg-load` writes the same city into one table per layer (fid
# bigint primary key = the MVT feature id, typed attribute columns, geometry
# in EPSG:3857 under a GiST index: no per-row transform), DefaultBuffer 64,
# JIT off; below z15 ?properties= keeps what CityTwin's lean tiles carry,
# at z10 only roads and bridges are asked for (CityTwin's buildings start
# at z13). Both get the tile list warmed once first (memos; shared buffers).
# Then (after opening pg_tileserv's whole connection pool, so that every
# backend's CPU is counted) per round, zoom and client count, alternating
# servers: tiles/s, p50,
# p99 and the servers' CPU per tile (/proc: twin; pg_tileserv and its
# PostgreSQL backends), with the load average; and once per zoom the raw
# (uncompressed) bytes and features per layer of every tile of the list
# fetched once without gzip. Asserts nothing.
#   BENCH_ZOOMS="10 13 14 15 16" BENCH_CLIENTS="1 8" BENCH_ROUNDS=2
#   BENCH_DURATION=10s BENCH_SCALE=1 BENCH_SETS="city centre"
#   BENCH_BEFORE=path/to/older/twin: a second CityTwin (e.g. main before a
#   change) served alongside and measured in the same alternation, after
#   the first ("twin-before"), for before/after figures in one sitting.
set -euo pipefail
BIN=${1:?usage: bench-tiles.sh path/to/twin path/to/pg_tileserv [postgres://...]}
PGTS=${2:?usage: bench-tiles.sh path/to/twin path/to/pg_tileserv [postgres://...]}
PGURL=${3:-postgres://postgres@127.0.0.1:5432/tilecmp}
GO=${GO:-go}
dir=$(mktemp -d /tmp/citytwin-tiles-XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
	rm -rf "$dir"
}
trap cleanup EXIT INT TERM
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
load() { cut -d' ' -f1-3 /proc/loadavg; }
"$GO" build -o "$dir/tileload" ./cmd/tileload
scale=${BENCH_SCALE:-1}

# A fresh machine has no such database: create it (and PostGIS in it) when
# the URL names one that does not exist yet.
if ! psql "$PGURL" -Atc 'SELECT 1' >/dev/null 2>&1; then
	db=${PGURL##*/}
	db=${db%%\?*}
	echo "== creating database $db"
	psql "${PGURL%/*}/postgres" -qc "CREATE DATABASE \"$db\""
fi
psql "$PGURL" -qc 'CREATE EXTENSION IF NOT EXISTS postgis' >/dev/null
echo "== loading the demo city (scale $scale) into $PGURL"
"$dir/tileload" -pg-load "$PGURL" -scale "$scale"

# serve BIN PORT NAME: a CityTwin on the demo city in $dir/NAME (log
# $dir/NAME.log); its pid is added to pids and left in served.
serve() {
	mkdir -p "$dir/$3"
	"$1" serve --demo --scale "$scale" --sim-rate 0 --listen "127.0.0.1:$2" --mqtt-listen "127.0.0.1:$(port)" \
		--data "$dir/$3" --log-level warn >"$dir/$3.log" 2>&1 &
	served=$!
	pids+=("$served")
}
tp=$(port)
serve "$BIN" "$tp" data
twin=$served
before=${BENCH_BEFORE:-}
if [ -n "$before" ]; then
	bp=$(port)
	serve "$before" "$bp" data-before
	twinb=$served
fi
pp=$(port)
sep='?'
case "$PGURL" in *\?*) sep='&' ;; esac
cat >"$dir/pg_tileserv.toml" <<EOF
DbConnection = "${PGURL}${sep}application_name=bench_tiles_pgts&jit=off"
HttpHost = "127.0.0.1"
HttpPort = $pp
HttpsPort = $(port)
DefaultBuffer = 64
ShowPreview = false
EOF
"$PGTS" --config "$dir/pg_tileserv.toml" >"$dir/pgts.log" 2>&1 &
pgts=$!
pids+=("$pgts")
for p in $tp ${bp:-}; do
	for _ in $(seq 1 240); do curl -fsS "http://127.0.0.1:$p/readyz" >/dev/null 2>&1 && break; sleep 0.5; done
	# The demo city is generated and stored after readyz: wait for the
	# first tiles, then for the server's start-up work (store, timeline)
	# to settle.
	for _ in $(seq 1 240); do
		[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$p/tiles/buildings.json")" = 200 ] && break
		sleep 0.5
	done
done
sleep 20
bounds=$(curl -fsS "http://127.0.0.1:$tp/tiles/buildings,roads,bridges.json" | python3 -c 'import json,sys; print(",".join(map(str, json.load(sys.stdin)["bounds"])))')
centre=106.533,29.52,106.622,29.596 # Jiefangbei: the densest 3x3 z13 tiles

ctattrs='attrs=class,height_m,high_rise,levels,name,oneway,risk_color,risk_level'
urls() { # zoom -> "twin-url pg-url twin-before-url"
	local z=$1 pg
	if [ "$z" -lt 13 ]; then
		pg="http://127.0.0.1:$pp/public.roads,public.bridges/{z}/{x}/{y}.pbf?properties=name,class,oneway"
	elif [ "$z" -lt 15 ]; then
		pg="http://127.0.0.1:$pp/public.buildings,public.roads,public.bridges/{z}/{x}/{y}.pbf?properties=height_m,levels,high_rise,risk_level,risk_color"
	else
		pg="http://127.0.0.1:$pp/public.buildings,public.roads,public.bridges/{z}/{x}/{y}.pbf?properties=name,height_m,levels,high_rise,risk_level,risk_color,class,oneway"
	fi
	echo "http://127.0.0.1:$tp/tiles/buildings,roads,bridges/{z}/{x}/{y}.mvt?$ctattrs,zz{n} $pg" \
		"http://127.0.0.1:${bp:-0}/tiles/buildings,roads,bridges/{z}/{x}/{y}.mvt?$ctattrs,zz{n}"
}
pgpids() {
	local b
	b=$(psql "$PGURL" -Atc "SELECT string_agg(pid::text, ',') FROM pg_stat_activity WHERE application_name = 'bench_tiles_pgts'")
	echo "$pgts${b:+,$b}"
}
run() { # name url pids flags...
	local name=$1 url=$2 p=$3
	shift 3
	echo "-- $name (load $(load))"
	"$dir/tileload" -url "$url" -pids "$p" "$@"
}

for set in ${BENCH_SETS:-city centre}; do
	b=$bounds
	[ "$set" = centre ] && b=$centre
	for z in ${BENCH_ZOOMS:-10 13 14 15 16}; do
		read -r ct pg cb < <(urls "$z")
		common=(-bounds "$b" -minzoom "$z" -maxzoom "$z" -tiles 300)
		echo "== $set z$z bytes: every tile of the list once, raw, 1 client"
		run twin "$ct" "$twin" "${common[@]}" -warm -once -nogzip -count -concurrency 1
		[ -z "$before" ] || run twin-before "$cb" "$twinb" "${common[@]}" -warm -once -nogzip -count -concurrency 1
		run pg_tileserv "$pg" "$(pgpids)" "${common[@]}" -warm -once -nogzip -count -concurrency 1
	done
done
# pg_tileserv opens pool connections (PostgreSQL backends) as clients
# come; open them all now, so that every backend is counted from a run's
# start.
read -r _ pg _ < <(urls 16)
"$dir/tileload" -url "$pg" -bounds "$bounds" -minzoom 16 -maxzoom 16 -tiles 100 -warm=false -once -concurrency 16 >/dev/null
for round in $(seq 1 "${BENCH_ROUNDS:-2}"); do
	for set in ${BENCH_SETS:-city centre}; do
		b=$bounds
		[ "$set" = centre ] && b=$centre
		for z in ${BENCH_ZOOMS:-10 13 14 15 16}; do
			read -r ct pg cb < <(urls "$z")
			for c in ${BENCH_CLIENTS:-1 8}; do
				common=(-bounds "$b" -minzoom "$z" -maxzoom "$z" -tiles 300 -warm=false -concurrency "$c"
					-duration "${BENCH_DURATION:-10s}")
				echo "== round $round $set z$z, $c clients, cold, gzip"
				run twin "$ct" "$twin" "${common[@]}"
				[ -z "$before" ] || run twin-before "$cb" "$twinb" "${common[@]}"
				run pg_tileserv "$pg" "$(pgpids)" "${common[@]}"
			done
		done
	done
done
