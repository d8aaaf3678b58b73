package ogc

import (
	"net/http"

	"github.com/citytwin/citytwin/internal/httpx"
)

// Conformance classes this server declares at /ogc/conformance: only those
// the conformance tests (acceptance/ogcconf) walk and pass. This is the one
// list; the API definition and the landing page read it too.
var conformance = append([]string{
	// OGC API - Features - Part 1: Core
	"http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
	"http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
	"http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
	// OGC API - Features - Part 3: Filtering
	"http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables",
	"http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables-query-parameters",
	"http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
	"http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/features-filter",
}, CQL2Conformance...) // the CQL2 classes cql.go implements

// Conformance serves GET /ogc/conformance.
func (a *API) Conformance(w http.ResponseWriter, r *http.Request) {
	httpx.JSON(w, http.StatusOK, map[string]any{"conformsTo": conformance})
}
