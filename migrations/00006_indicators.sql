-- Indicators over time (governance/indicators): one row per region, step
-- (hour, day) and bucket start, holding the bucket's figures as JSON and
-- the last feed sequence they include (a write with a lower seq never
-- replaces a row: replays and a former leader's late writes are harmless).
-- indicator_objects holds the consumer's per-object summaries (what it has
-- already counted of each alert, incident and task); they and the
-- consumer's position (meta key indicators_pos) are written in the same
-- transaction as the rows.

-- +goose Up
CREATE TABLE indicators (
  region text NOT NULL,
  step   text NOT NULL CHECK (step IN ('hour', 'day')),
  start  timestamptz NOT NULL,
  seq    bigint NOT NULL,
  data   jsonb NOT NULL,
  PRIMARY KEY (region, step, start)
);

CREATE TABLE indicator_objects (
  id      text PRIMARY KEY,
  summary jsonb NOT NULL
);

-- +goose Down
DROP TABLE indicators, indicator_objects;
