# CityTwin: `make run` starts the demo city on the embedded store and broker;
# `make test` runs every test (Go with -race against real PostGIS and MQTT,
# the client's unit tests, and the browser end-to-end test).
GO      ?= go
BIN     := bin/twin
LISTEN  ?= 127.0.0.1:8080
GOFLAGS ?=

.PHONY: all build client client-deps run test test-go test-client test-e2e vet bench fuzz clean

all: build

client-deps:
	@cd webgl-client && { test -d node_modules || npm ci --no-audit --no-fund || npm install --no-audit --no-fund; }

# The client is built into webgl-client/dist and embedded in the binary.
client: client-deps
	cd webgl-client && npm run build

build: client
	$(GO) build $(GOFLAGS) -o $(BIN) ./cmd/twin

run: build
	./$(BIN) serve --demo --listen $(LISTEN)

vet:
	$(GO) vet ./...

# TWIN_TEST_DB (an admin URL of a PostgreSQL with PostGIS available) may be
# given; otherwise scripts/ensure-postgis.sh makes the local one ready.
test: build vet
	@eval "$$(bash scripts/ensure-postgis.sh)"; \
	  $(GO) test -race -timeout 20m ./... && \
	  $(MAKE) --no-print-directory test-client test-e2e

test-client: client-deps
	cd webgl-client && npm test

test-e2e: build
	cd webgl-client && node e2e/run.mjs ../$(BIN)

bench:
	$(GO) test -run '^$$' -bench . -benchtime 2s ./twin/... ./spatial/... ./ingest/... ./tiles/... ./rules/... ./wshub/... ./governance/...

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzDecode -fuzztime 30s ./ingest/telemetry
	$(GO) test -run '^$$' -fuzz FuzzParseTilePath -fuzztime 30s ./tiles
	$(GO) test -run '^$$' -fuzz FuzzCQL2 -fuzztime 30s ./governance/ogc
	$(GO) test -run '^$$' -fuzz '^FuzzReportBody$$' -fuzztime 15s ./governance/incidents
	$(GO) test -run '^$$' -fuzz '^FuzzActionBody$$' -fuzztime 15s ./governance/incidents
	$(GO) test -run '^$$' -fuzz '^FuzzRulesBody$$' -fuzztime 15s ./rules

clean:
	rm -rf bin var webgl-client/dist/assets webgl-client/dist/index.html
