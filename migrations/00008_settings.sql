-- The settings layer (twin.Settings): the twin's configuration as objects
-- without geometry, carried through the change log like any change and
-- kept here so a restart runs the same (settings/rules: the running rules
-- set by PUT /api/rules or a --rules file). Same columns as every layer so
-- the one upsert serves it.

-- +goose Up
CREATE TABLE settings (
  name     text PRIMARY KEY,
  geom     geometry(Geometry, 4326),
  props    jsonb NOT NULL DEFAULT '{}',
  version  bigint NOT NULL,
  updated  timestamptz,
  observed timestamptz,
  region   text[] NOT NULL DEFAULT '{}',
  grid     text,
  h3       bigint,
  h3_cells bigint[],
  source   text
);
CREATE UNIQUE INDEX settings_source ON settings (source) WHERE source IS NOT NULL;

-- +goose Down
DROP TABLE settings;
