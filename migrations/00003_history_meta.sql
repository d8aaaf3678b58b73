-- Telemetry history is append-heavy and read per object by time range: the
-- primary key serves the per-object reads (and makes re-appends idempotent),
-- and a BRIN index on ts (tiny, cheap to maintain for time-ordered appends)
-- serves retention and whole-city time scans. Absent fields are NULL.

-- +goose Up
CREATE TABLE telemetry (
  layer     text NOT NULL,
  name      text NOT NULL,
  ts        timestamptz NOT NULL,
  lon       double precision,
  lat       double precision,
  speed_kmh double precision,
  heading   double precision,
  "values"  jsonb,
  PRIMARY KEY (layer, name, ts)
);
CREATE INDEX telemetry_ts_brin ON telemetry USING brin (ts);

-- Small named values: last flushed feed sequence, timers, keys.
CREATE TABLE meta (
  key   text PRIMARY KEY,
  value bytea NOT NULL
);

-- +goose Down
DROP TABLE telemetry, meta;
