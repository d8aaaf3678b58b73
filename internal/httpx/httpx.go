// Package httpx holds the small HTTP helpers every handler package shares:
// JSON bodies and the one JSON error shape of CONTRACT §5.
package httpx

import (
	"encoding/json"
	"net/http"
)

// ErrorBody is the JSON error body of every failed request.
type ErrorBody struct {
	Error  string `json:"error"`
	Detail any    `json:"detail,omitempty"`
}

// Error answers status with {"error": msg, "detail": detail}.
func Error(w http.ResponseWriter, status int, msg string, detail any) {
	JSON(w, status, ErrorBody{Error: msg, Detail: detail})
}

// JSON answers status with v encoded as JSON.
func JSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// ContentJSON answers status with v as JSON under a specific media type
// (application/geo+json for GeoJSON).
func ContentJSON(w http.ResponseWriter, status int, contentType string, v any) {
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
