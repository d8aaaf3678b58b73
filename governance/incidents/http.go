package incidents

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/citytwin/citytwin/auth"
	"github.com/citytwin/citytwin/internal/httpx"
	"github.com/citytwin/citytwin/twin"
)

// ReportHandler serves POST /api/incidents: 201 with the new incident, or
// 200 with the open incident the report merged into ("merged": true).
func (s *Service) ReportHandler(w http.ResponseWriter, r *http.Request) {
	body, err := httpx.ReadBody(w, r, maxReportBody)
	if err != nil {
		httpx.Error(w, http.StatusRequestEntityTooLarge, "report body too large", fmt.Sprintf("limit %d bytes", maxReportBody))
		return
	}
	rep, err := DecodeReport(body)
	if err != nil {
		httpx.Error(w, http.StatusBadRequest, "bad report body", err.Error())
		return
	}
	if err := rep.validText(); err != nil {
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
	body, err := httpx.ReadBody(w, r, maxActionBody)
	if err != nil {
		httpx.Error(w, http.StatusRequestEntityTooLarge, "action body too large", fmt.Sprintf("limit %d bytes", maxActionBody))
		return
	}
	a, err := DecodeAction(body)
	if err != nil {
		httpx.Error(w, http.StatusBadRequest, "bad action body", err.Error())
		return
	}
	if err := a.validText(); err != nil {
		httpx.Error(w, http.StatusBadRequest, "bad action body", err.Error())
		return
	}
	p := auth.Of(r.Context())
	f, err := s.Act(p, r.PathValue("name"), r.PathValue("action"), a)
	if err != nil {
		writeErr(w, err)
		return
	}
	httpx.JSON(w, http.StatusOK, f)
}

// Body limits (bytes).
const (
	maxReportBody = 64 << 10
	maxActionBody = 16 << 10
)

// DecodeReport reads a POST /api/incidents body: one JSON object, nothing
// after it. Unknown members (a "reporter", which the token decides) are
// ignored; Report validates the values.
func DecodeReport(b []byte) (Report, error) {
	var r Report
	if err := decodeOne(b, &r); err != nil {
		return Report{}, err
	}
	return r, nil
}

// DecodeAction reads a POST /api/incidents/{name}/{action} body: empty,
// or one JSON object.
func DecodeAction(b []byte) (Action, error) {
	var a Action
	if len(bytes.TrimSpace(b)) == 0 {
		return a, nil
	}
	if err := decodeOne(b, &a); err != nil {
		return Action{}, err
	}
	if len(a.Worker) > 256 || len(a.Note) > maxDescription {
		return Action{}, errors.New("worker or note too long")
	}
	return a, nil
}

// decodeOne decodes exactly one JSON object (not null, no trailing data).
func decodeOne(b []byte, v any) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return errors.New("want a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("data after the JSON object")
	}
	return nil
}

func writeErr(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrNoSuchWorker):
		httpx.Error(w, http.StatusNotFound, "not found", err.Error())
	case errors.Is(err, ErrBadReport), errors.Is(err, twin.ErrBadText):
		httpx.Error(w, http.StatusBadRequest, "bad report", err.Error())
	case errors.Is(err, ErrForbidden):
		httpx.Error(w, http.StatusForbidden, "forbidden", err.Error())
	case errors.Is(err, ErrTransition), errors.Is(err, ErrTooFar), errors.Is(err, ErrNoWorker), errors.Is(err, ErrWorkerBusy):
		httpx.Error(w, http.StatusConflict, "conflict", err.Error())
	default:
		httpx.Error(w, http.StatusInternalServerError, "internal error", err.Error())
	}
}
