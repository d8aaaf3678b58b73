-- PostGIS is required by every layer table. Check availability first so a
-- server without the package fails with the fix rather than with
-- "could not open extension control file".

-- +goose Up
-- +goose StatementBegin
DO $$
DECLARE
  major int := current_setting('server_version_num')::int / 10000;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'postgis') THEN
    RAISE EXCEPTION 'PostGIS is not installed on this PostgreSQL % server', major
      USING HINT = format('install it (Debian/Ubuntu: apt-get install postgresql-%s-postgis-3, or run make test which does so) and rerun twin migrate', major);
  END IF;
END
$$;
-- +goose StatementEnd
CREATE EXTENSION IF NOT EXISTS postgis;

-- +goose Down
-- The extension is left in place: other schemas may use it, and dropping it
-- is not needed to undo this project's tables.
SELECT 1;
