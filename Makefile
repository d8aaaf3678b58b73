# CityTwin: `make run` starts the demo city on the embedded store and broker;
# `make test` runs every check: golangci-lint, vet, the Go tests (-race,
# against real PostGIS and MQTT), every fuzz target for a few seconds, the
# client's unit tests and the browser end-to-end test.
GO      ?= go
BIN     := bin/twin
LISTEN  ?= 127.0.0.1:8080
GOFLAGS ?=
# golangci-lint, pinned; built from the module proxy on first use and then
# cached by the go command.
GOLANGCI_LINT ?= $(GO) run github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0
FUZZTIME ?= 3s

.PHONY: all build client client-deps run test test-go test-client test-e2e vet lint fuzz-short bench bench-e2e bench-client fuzz clean

all: build

# npm ci installs exactly the lock (it never rewrites it; a lock out of step
# with package.json is an error to fix, not to paper over), and only when
# the lock changed since the last install (npm writes the stamp
# node_modules/.package-lock.json).
CLIENT_DEPS := webgl-client/node_modules/.package-lock.json
$(CLIENT_DEPS): webgl-client/package-lock.json webgl-client/package.json
	cd webgl-client && npm ci --no-audit --no-fund
	@touch $@

client-deps: $(CLIENT_DEPS)

# The client is built into webgl-client/dist and embedded in the binary;
# it is rebuilt only when its sources, config or packages changed.
CLIENT_SRC := $(shell find webgl-client/src webgl-client/public -type f 2>/dev/null) \
	$(wildcard webgl-client/*.html) webgl-client/vite.config.js
CLIENT_OUT := webgl-client/dist/index.html
$(CLIENT_OUT): $(CLIENT_DEPS) $(CLIENT_SRC)
	cd webgl-client && npm run build
	@touch $@

client: $(CLIENT_OUT)

build: client
	$(GO) build $(GOFLAGS) -o $(BIN) ./cmd/twin

run: build
	./$(BIN) serve --demo --listen $(LISTEN)

vet:
	$(GO) vet ./...

# golangci-lint with the house rules of .golangci.yml (import direction,
# errorlint, bodyclose, contextcheck and the defaults).
lint:
	$(GOLANGCI_LINT) run ./...

# Every `func Fuzz*` of the module for FUZZTIME each (scripts/fuzz-short.sh
# finds them, so new targets are picked up without listing them here).
fuzz-short:
	GO="$(GO)" bash scripts/fuzz-short.sh $(FUZZTIME)

# TWIN_TEST_DB (an admin URL of a PostgreSQL with PostGIS available) may be
# given; otherwise scripts/ensure-postgis.sh makes the local one ready.
test: lint build vet
	@eval "$$(bash scripts/ensure-postgis.sh)"; \
	  $(GO) test -race -timeout 20m ./... && \
	  $(MAKE) --no-print-directory fuzz-short test-client test-e2e

test-client: client-deps
	cd webgl-client && npm test

test-e2e: build
	cd webgl-client && node e2e/run.mjs ../$(BIN)

bench:
	$(GO) test -run '^$$' -bench . -benchtime 2s ./twin/... ./spatial/... ./ingest/... ./tiles/... ./rules/... ./wshub/... ./governance/...

# The end-to-end benchmarks against a fresh demo server in a temp directory
# (scripts/bench-e2e.sh: tileload, twinload, wsload with the README's
# settings, each between `uptime` lines). Not part of `make test`.
bench-e2e: build
	GO="$(GO)" bash scripts/bench-e2e.sh ./$(BIN)

# The browser benchmark: the end-to-end run with 10,000 then 50,000 moving objects on the
# operator map; frame times and update rate are printed as a report (and
# saved in webgl-client/artifacts/bench-N.json), never asserted.
bench-client: build
	cd webgl-client && E2E_BENCH=10000,50000 node e2e/run.mjs ../$(BIN)

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzDecode -fuzztime 30s ./ingest/telemetry
	$(GO) test -run '^$$' -fuzz FuzzParseTilePath -fuzztime 30s ./tiles
	$(GO) test -run '^$$' -fuzz FuzzCQL2 -fuzztime 30s ./governance/ogc
	$(GO) test -run '^$$' -fuzz '^FuzzReportBody$$' -fuzztime 15s ./governance/incidents
	$(GO) test -run '^$$' -fuzz '^FuzzActionBody$$' -fuzztime 15s ./governance/incidents
	$(GO) test -run '^$$' -fuzz '^FuzzRulesBody$$' -fuzztime 15s ./rules

clean:
	rm -rf bin var webgl-client/dist/assets webgl-client/dist/index.html
