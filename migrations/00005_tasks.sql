-- The governance work loop's layers (CONTRACT §2, §8): tasks (directive
-- targets, rectification, enforcement) and directives (orders with their
-- roll-up), with the same columns as every other layer so the one upsert
-- serves them, plus generated columns for the operational queries (open
-- and overdue tasks by kind, state and tier).

-- +goose Up
-- +goose StatementBegin
DO $$
DECLARE
  l text;
BEGIN
  FOREACH l IN ARRAY ARRAY['tasks','directives'] LOOP
    EXECUTE format($f$
      CREATE TABLE %1$I (
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
      CREATE INDEX %1$s_geom_gist ON %1$I USING gist (geom);
      CREATE INDEX %1$s_region_gin ON %1$I USING gin (region);
      CREATE INDEX %1$s_grid ON %1$I (grid);
      CREATE INDEX %1$s_h3 ON %1$I (h3);
      CREATE INDEX %1$s_h3_cells_gin ON %1$I USING gin (h3_cells);
      CREATE UNIQUE INDEX %1$s_source ON %1$I (source) WHERE source IS NOT NULL;
    $f$, l);
  END LOOP;
END
$$;
-- +goose StatementEnd

ALTER TABLE tasks
  ADD COLUMN kind      text GENERATED ALWAYS AS (props->>'kind') STORED,
  ADD COLUMN state     text GENERATED ALWAYS AS (props->>'state') STORED,
  ADD COLUMN tier      text GENERATED ALWAYS AS (props->>'tier') STORED,
  ADD COLUMN assignee  text GENERATED ALWAYS AS (props->>'assignee') STORED,
  ADD COLUMN subject   text GENERATED ALWAYS AS (props->>'subject') STORED,
  ADD COLUMN directive text GENERATED ALWAYS AS (props->>'directive') STORED,
  ADD COLUMN due       timestamptz GENERATED ALWAYS AS (twin_ts(props->>'due')) STORED;
CREATE INDEX tasks_state ON tasks (kind, state);
CREATE INDEX tasks_subject ON tasks (subject);
CREATE INDEX tasks_directive ON tasks (directive);

-- +goose Down
DROP TABLE tasks, directives;
