// Package server is CityTwin's thin HTTP layer: it routes requests to the
// handlers of the other packages, authenticates them (bearer tokens, CONTRACT
// §7), answers health, readiness and metrics, and turns errors into JSON.
package server

import (
	"encoding/json"
	"net/http"
)

// Error is the JSON error body of every failed request (CONTRACT §5).
type Error struct {
	Error  string `json:"error"`
	Detail any    `json:"detail,omitempty"`
}

// WriteError answers status with {"error": msg, "detail": detail}.
func WriteError(w http.ResponseWriter, status int, msg string, detail any) {
	WriteJSON(w, status, Error{Error: msg, Detail: detail})
}

// WriteJSON answers status with v as JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
