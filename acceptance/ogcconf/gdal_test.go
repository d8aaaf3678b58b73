package ogcconf

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
)

// ogr2ogr returns the path of GDAL's ogr2ogr, skipping the test when it is
// missing on a workstation; in CI (CI=true, where .ci/run installs
// gdal-bin) a missing GDAL fails the test.
func ogr2ogr(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("ogr2ogr")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("ogr2ogr not found, and CI=true (.ci/run installs gdal-bin): %v", err)
		}
		t.Skipf("ogr2ogr not found (apt-get install gdal-bin): %v", err)
	}
	return p
}

// counter is a reverse proxy in front of the demo server that records
// every request GDAL makes.
type counter struct {
	srv *httptest.Server
	mu  sync.Mutex
	req []string
}

func newCounter(t *testing.T) *counter {
	t.Helper()
	target, err := url.Parse(demo.url)
	if err != nil {
		t.Fatal(err)
	}
	c := &counter{}
	proxy := httputil.NewSingleHostReverseProxy(target)
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		c.req = append(c.req, r.URL.RequestURI())
		c.mu.Unlock()
		proxy.ServeHTTP(w, r) // keeps the client's Host, so links point at the proxy
	}))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *counter) requests() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.req...)
}

// runOGR runs ogr2ogr with args, failing on a non-zero exit or an ERROR line.
func runOGR(t *testing.T, bin string, args ...string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "GDAL_HTTP_TIMEOUT=120")
	out, err := cmd.CombinedOutput()
	if err != nil || strings.Contains(string(out), "ERROR") {
		t.Fatalf("ogr2ogr %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

type geojsonFile struct {
	Features []struct {
		Properties map[string]any `json:"properties"`
	} `json:"features"`
}

func readGeoJSON(t *testing.T, path string) geojsonFile {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var g geojsonFile
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return g
}

// TestGDALKeepsEveryField: ogr2ogr of every collection into GeoJSON keeps
// every feature and every prop: for each prop, as many features carry a
// value for it in GDAL's copy as in the server's answer. Without the
// describedBy schema GDAL typed the layer from its first page and dropped
// attached_to and values on 7,791 of 8,117 devices. Pages of 1,000
// (PAGE_SIZE, as a planner would pass for a large layer).
func TestGDALKeepsEveryField(t *testing.T) {
	bin := ogr2ogr(t)
	dir := t.TempDir()
	for _, l := range layers {
		t.Run(l, func(t *testing.T) {
			want := map[string]int{}
			served := all(t, "/ogc/collections/"+l+"/items?limit=10000")
			for _, f := range served {
				for k, v := range f.Props {
					if v != nil {
						want[k]++
					}
				}
			}
			out := filepath.Join(dir, l+".geojson")
			runOGR(t, bin, "-f", "GeoJSON", out, "OAPIF:"+demo.url+"/ogc", l, "-oo", "PAGE_SIZE=1000")
			g := readGeoJSON(t, out)
			if len(g.Features) != len(served) {
				t.Fatalf("GDAL copied %d of %d features", len(g.Features), len(served))
			}
			got := map[string]int{}
			for _, f := range g.Features {
				for k, v := range f.Properties {
					if v != nil {
						got[k]++
					}
				}
			}
			for k, n := range want {
				if got[k] != n {
					t.Errorf("field %s: %d features carry it in GDAL's copy, %d on the server", k, got[k], n)
				}
			}
		})
	}
}

// TestGDALPushesWhereDown: ogr2ogr -where "kind = 'camera'" on devices, with
// GDAL's defaults, sends the filter as CQL2 text and fetches only the
// cameras' pages. Before the API definition GDAL found no filter support and
// paged all 8,117 devices 10 at a time: 817 requests for 326 cameras.
func TestGDALPushesWhereDown(t *testing.T) {
	bin := ogr2ogr(t)
	c := newCounter(t)
	out := filepath.Join(t.TempDir(), "cameras.geojson")
	runOGR(t, bin, "-f", "GeoJSON", out, "OAPIF:"+c.srv.URL+"/ogc", "devices", "-where", "kind = 'camera'")
	if n := len(readGeoJSON(t, out).Features); n != 326 {
		t.Fatalf("GDAL copied %d cameras, want 326", n)
	}
	reqs := c.requests()
	filtered, unfiltered := 0, 0
	for _, r := range reqs {
		if !strings.Contains(r, "/items") {
			continue
		}
		u, err := url.Parse(r)
		if err != nil {
			t.Fatal(err)
		}
		q := u.Query()
		if f := q.Get("filter"); f != "" {
			filtered++
			if !strings.Contains(f, "kind = 'camera'") {
				t.Errorf("filter %q is not the -where", f)
			}
			continue
		}
		unfiltered++
	}
	// One unfiltered page establishes the layer's definition; the rest are
	// the 33 pages of 10 cameras.
	if filtered < 33 || unfiltered > 1 {
		sort.Strings(reqs)
		t.Errorf("GDAL made %d filtered and %d unfiltered items requests:\n%s", filtered, unfiltered, strings.Join(reqs, "\n"))
	}
	t.Logf("ogr2ogr -where \"kind = 'camera'\" on devices: %d requests (%d items pages with the CQL2 filter), 326 cameras", len(reqs), filtered)
	if len(reqs) > 60 {
		t.Errorf("%d requests for 326 cameras", len(reqs))
	}
}
