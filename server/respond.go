// Package server is CityTwin's thin HTTP layer: it routes requests to the
// handlers of the other packages, authenticates them (bearer tokens, CONTRACT
// §7), answers health, readiness and metrics, and turns errors into JSON.
package server

import (
	"net/http"

	"github.com/citytwin/citytwin/internal/httpx"
)

// WriteError answers status with {"error": msg, "detail": detail}.
func WriteError(w http.ResponseWriter, status int, msg string, detail any) {
	httpx.Error(w, status, msg, detail)
}

// WriteJSON answers status with v as JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) { httpx.JSON(w, status, v) }
