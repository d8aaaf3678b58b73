-- One table per layer of CONTRACT §2, all with the same columns so one
-- upsert statement serves every layer. h3 is the first (point) cell, h3_cells
-- the full cover; H3 indexes fit in bigint because bit 63 is always zero.

-- +goose Up
-- +goose StatementBegin
DO $$
DECLARE
  l text;
BEGIN
  FOREACH l IN ARRAY ARRAY['regions','grids','roads','bridges','rivers','buildings',
                           'devices','vehicles','workers','incidents','alerts'] LOOP
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

-- twin_ts reads an RFC 3339 prop as timestamptz, NULL when absent or
-- malformed. Declared IMMUTABLE so generated columns can use it: RFC 3339
-- carries its own offset, so the result does not depend on the session zone.
-- +goose StatementBegin
CREATE FUNCTION twin_ts(s text) RETURNS timestamptz
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  RETURN s::timestamptz;
EXCEPTION WHEN others THEN
  RETURN NULL;
END
$$;
-- +goose StatementEnd

-- Typed columns for the operational queries (open alerts by colour,
-- incidents by state and deadline). They are generated from props, so they
-- can never drift from the feature the twin wrote.
ALTER TABLE alerts
  ADD COLUMN state    text GENERATED ALWAYS AS (props->>'state') STORED,
  ADD COLUMN rule     text GENERATED ALWAYS AS (props->>'rule') STORED,
  ADD COLUMN severity text GENERATED ALWAYS AS (props->>'severity') STORED,
  ADD COLUMN subject  text GENERATED ALWAYS AS (props->>'subject') STORED,
  ADD COLUMN tier     text GENERATED ALWAYS AS (props->>'tier') STORED;
CREATE INDEX alerts_state ON alerts (state, severity);
CREATE INDEX alerts_subject ON alerts (subject);

ALTER TABLE incidents
  ADD COLUMN type      text GENERATED ALWAYS AS (props->>'type') STORED,
  ADD COLUMN state     text GENERATED ALWAYS AS (props->>'state') STORED,
  ADD COLUMN assignee  text GENERATED ALWAYS AS (props->>'assignee') STORED,
  ADD COLUMN tier      text GENERATED ALWAYS AS (props->>'tier') STORED,
  ADD COLUMN accept_by timestamptz GENERATED ALWAYS AS (twin_ts(props->'sla'->>'accept_by')) STORED,
  ADD COLUMN arrive_by timestamptz GENERATED ALWAYS AS (twin_ts(props->'sla'->>'arrive_by')) STORED,
  ADD COLUMN report_by timestamptz GENERATED ALWAYS AS (twin_ts(props->'sla'->>'report_by')) STORED;
CREATE INDEX incidents_state ON incidents (state);
CREATE INDEX incidents_assignee ON incidents (assignee);

-- +goose Down
DROP TABLE regions, grids, roads, bridges, rivers, buildings, devices, vehicles, workers, incidents, alerts;
DROP FUNCTION twin_ts(text);
