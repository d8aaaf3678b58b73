package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/citytwin/citytwin/ingest/importer"
	"github.com/citytwin/citytwin/twin"
	"github.com/citytwin/citytwin/twin/boot"
	"github.com/citytwin/citytwin/twin/locate"
)

func runImport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("import", flag.ContinueOnError)
	db := fs.String("db", "", "PostGIS URL (empty: embedded store in --data)")
	data := fs.String("data", "./var", "data directory of the embedded store")
	layer := fs.String("layer", "", "force every feature into this layer (default: inferred)")
	crs := fs.String("crs", "wgs84", "coordinate system of the file: wgs84 or gcj02 (converted to WGS84)")
	nameProp := fs.String("name-prop", "", "source property used as the object name (default: the feature id)")
	props := fs.String("props", "", "property renames, source=twin pairs separated by commas (e.g. NAME=name,H=height_m)")
	logLevel := fs.String("log-level", "warn", "debug, info, warn or error")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usageError{fmt.Errorf("want one or more files (.geojson, .json, .osm, .osm.pbf, mesh .xml/.xml.gz)")}
	}
	var l twin.Layer
	if *layer != "" {
		var err error
		if l, err = twin.ParseLayer(*layer); err != nil {
			return usageError{err}
		}
	}
	renames := map[string]string{}
	for _, kv := range strings.Split(*props, ",") {
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return usageError{fmt.Errorf("--props %q: want source=twin pairs", kv)}
		}
		renames[k] = v
	}
	log := newLogger(stderr, *logLevel)
	st, err := openStore(ctx, *db, *data, log, nil, 0) // no pauses: nothing else waits on an import
	if err != nil {
		return err
	}
	defer st.Close()
	// Place imported objects in the regions already stored (import the
	// regions first to get region paths on everything else).
	loc := locate.New()
	tw := twin.New(twin.Options{})
	if _, err := boot.Load(ctx, st, tw, loc); err != nil {
		return err
	}
	failed := false
	for _, path := range fs.Args() {
		sum, err := importer.Import(ctx, path, importer.Options{Store: st, Layer: l, CRS: *crs, NameProp: *nameProp,
			Props: renames, Enricher: loc, Progress: importer.ProgressWriter(os.Stderr), Logger: log})
		for _, p := range sum.Problems {
			fmt.Fprintln(stderr, p.String())
		}
		if err == nil || sum.Read > 0 {
			fmt.Fprintf(stdout, "%s: read %d, imported %d, unchanged %d, skipped %d in %s\n",
				path, sum.Read, sum.Imported, sum.Unchanged, sum.Skipped, sum.Duration.Round(1e6))
		}
		if err != nil {
			fmt.Fprintln(stderr, err) // importer errors name the file
			failed = true
		}
		if l == "" || l == twin.Regions {
			// Newly imported regions place the following files.
			if _, err := boot.Load(ctx, st, twin.New(twin.Options{}), loc); err != nil {
				return err
			}
		}
	}
	if failed {
		return fmt.Errorf("some files failed")
	}
	return nil
}
