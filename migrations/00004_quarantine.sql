-- Records the store writer could not write (a NUL in a string, invalid
-- UTF-8, a violated constraint) are set aside here instead of being retried
-- forever: the rest of their batch is written, and an operator can inspect,
-- repair and replay them. Columns hold any bytes: the name is kept raw in
-- name_raw (name is a printable copy) and the record is JSON in a text
-- column (jsonb refuses \u0000, which is often why the row is here).

-- +goose Up
CREATE TABLE quarantine (
  id       bigserial PRIMARY KEY,
  at       timestamptz NOT NULL,
  kind     text NOT NULL,
  layer    text NOT NULL,
  name     text NOT NULL,
  name_raw bytea NOT NULL,
  version  bigint,
  error    text NOT NULL,
  data     text NOT NULL
);
CREATE INDEX quarantine_at ON quarantine (at);

-- +goose Down
DROP TABLE quarantine;
