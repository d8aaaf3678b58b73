-- The city's timeline for replay (twin.Timeline, written by twin/timeline):
-- change chunks (compressed record blobs per time bucket and recorder
-- flush), full-state checkpoints of the live layers per map cell, and
-- per-object versions of the slow layers (buildings' risk). Times are Unix
-- nanoseconds (bigint), exact like the telemetry's own timestamps. Blobs
-- are opaque to SQL: twin.EncodeRecords.

-- +goose Up
CREATE TABLE timeline_changes (
  bucket bigint NOT NULL,
  key    bigint NOT NULL,
  min_at bigint NOT NULL,
  max_at bigint NOT NULL,
  data   bytea NOT NULL,
  PRIMARY KEY (bucket, key)
);
CREATE TABLE timeline_checkpoints (
  at   bigint NOT NULL,
  cell bigint NOT NULL,
  data bytea NOT NULL,
  PRIMARY KEY (at, cell)
);
CREATE TABLE timeline_versions (
  layer text NOT NULL,
  name  text NOT NULL,
  at    bigint NOT NULL,
  seq   bigint NOT NULL,
  data  bytea NOT NULL,
  PRIMARY KEY (layer, name, at, seq)
);
CREATE INDEX timeline_versions_at ON timeline_versions (at);

-- +goose Down
DROP TABLE timeline_changes, timeline_checkpoints, timeline_versions;
