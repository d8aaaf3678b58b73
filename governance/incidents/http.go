package incidents

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/citytwin/citytwin/auth"
	"github.com/citytwin/citytwin/internal/httpx"
)

// ReportHandler serves POST /api/incidents: 201 with the new incident, or
// 200 with the open incident the report merged into ("merged": true).
func (s *Service) ReportHandler(w http.ResponseWriter, r *http.Request) {
	var rep Report
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	if err := dec.Decode(&rep); err != nil {
		httpx.Error(w, http.StatusBadRequest, "bad report body", err.Error())
		return
	}
	p := auth.Of(r.Context())
	f, merged, err := s.Report(p, rep)
	if err != nil {
		writeErr(w, err)
		return
	}
	status := http.StatusCreated
	if merged {
		status = http.StatusOK
	}
	httpx.JSON(w, status, map[string]any{"merged": merged, "incident": f})
}

// ActionHandler serves POST /api/incidents/{name}/{action}.
func (s *Service) ActionHandler(w http.ResponseWriter, r *http.Request) {
	var a Action
	if r.ContentLength != 0 {
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 16<<10)).Decode(&a); err != nil && err.Error() != "EOF" {
			httpx.Error(w, http.StatusBadRequest, "bad action body", err.Error())
			return
		}
	}
	p := auth.Of(r.Context())
	f, err := s.Act(p, r.PathValue("name"), r.PathValue("action"), a)
	if err != nil {
		writeErr(w, err)
		return
	}
	httpx.JSON(w, http.StatusOK, f)
}

func writeErr(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrNotFound):
		httpx.Error(w, http.StatusNotFound, "not found", err.Error())
	case errors.Is(err, ErrBadReport):
		httpx.Error(w, http.StatusBadRequest, "bad report", err.Error())
	case errors.Is(err, ErrForbidden):
		httpx.Error(w, http.StatusForbidden, "forbidden", err.Error())
	case errors.Is(err, ErrTransition), errors.Is(err, ErrTooFar), errors.Is(err, ErrNoWorker):
		httpx.Error(w, http.StatusConflict, "conflict", err.Error())
	default:
		httpx.Error(w, http.StatusInternalServerError, "internal error", err.Error())
	}
}
