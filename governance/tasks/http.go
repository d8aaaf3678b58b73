package tasks

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/citytwin/citytwin/auth"
	"github.com/citytwin/citytwin/internal/httpx"
	"github.com/citytwin/citytwin/twin"
)

// maxBody bounds every request body of the loop (bytes).
const maxBody = 64 << 10

// Route is one endpoint for the server to mount (method and path pattern,
// and whether it changes anything).
type Route struct {
	Pattern string
	Handler http.HandlerFunc
	Write   bool
}

// Routes lists the loop's endpoints (README "Work loops").
func (s *Service) Routes() []Route {
	return []Route{
		{"POST /api/directives", s.directiveCreate, true},
		{"GET /api/directives", s.directiveList, false},
		{"GET /api/directives/{name}", s.directiveGet, false},
		{"GET /api/tasks", s.taskList, false},
		{"POST /api/tasks", s.taskCreate, true},
		{"GET /api/tasks/{name}", s.taskGet, false},
		{"POST /api/tasks/{name}/{action}", s.taskAction, true},
		{"POST /api/tasks/{name}/evidence", s.evidencePost, true},
		{"GET /api/tasks/{name}/evidence/{id}", s.evidenceGet, false},
	}
}

func (s *Service) directiveCreate(w http.ResponseWriter, r *http.Request) {
	var req DirectiveReq
	if !readBody(w, r, &req) {
		return
	}
	d, err := s.CreateDirective(auth.Of(r.Context()), req)
	if err != nil {
		writeErr(w, err)
		return
	}
	v, err := s.Directive(auth.Of(r.Context()), d.ID.Name)
	if err != nil {
		writeErr(w, err)
		return
	}
	httpx.JSON(w, http.StatusCreated, v)
}

func (s *Service) directiveList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := 100
	for k := range q {
		if k != "limit" {
			httpx.Error(w, http.StatusBadRequest, "unknown query parameter", k+" (limit)")
			return
		}
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 1000 {
			httpx.Error(w, http.StatusBadRequest, "bad limit", "1 to 1000")
			return
		}
		limit = n
	}
	ds := s.Directives(auth.Of(r.Context()), limit)
	if ds == nil {
		ds = []*twin.Feature{}
	}
	httpx.JSON(w, http.StatusOK, map[string]any{"type": "FeatureCollection", "features": ds, "numberReturned": len(ds)})
}

func (s *Service) directiveGet(w http.ResponseWriter, r *http.Request) {
	v, err := s.Directive(auth.Of(r.Context()), r.PathValue("name"))
	if err != nil {
		writeErr(w, err)
		return
	}
	httpx.JSON(w, http.StatusOK, v)
}

func (s *Service) taskList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	fl := Filter{Kind: q.Get("kind"), State: q.Get("state"), Subject: q.Get("subject"), Directive: q.Get("directive"), Limit: 500}
	for k := range q {
		switch k {
		case "kind", "state", "subject", "directive", "limit", "open":
		default:
			httpx.Error(w, http.StatusBadRequest, "unknown query parameter", k+" (kind, state, subject, directive, open, limit)")
			return
		}
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 10000 {
			httpx.Error(w, http.StatusBadRequest, "bad limit", "1 to 10000")
			return
		}
		fl.Limit = n
	}
	fl.Open = q.Get("open") == "true"
	ts := s.List(auth.Of(r.Context()), fl)
	if ts == nil {
		ts = []*twin.Feature{}
	}
	httpx.JSON(w, http.StatusOK, map[string]any{"type": "FeatureCollection", "features": ts, "numberReturned": len(ts)})
}

func (s *Service) taskCreate(w http.ResponseWriter, r *http.Request) {
	var req RectifyReq
	if !readBody(w, r, &req) {
		return
	}
	f, err := s.CreateRectification(auth.Of(r.Context()), req)
	if err != nil {
		writeErr(w, err)
		return
	}
	httpx.JSON(w, http.StatusCreated, f)
}

func (s *Service) taskGet(w http.ResponseWriter, r *http.Request) {
	f, err := s.Get(auth.Of(r.Context()), r.PathValue("name"))
	if err != nil {
		writeErr(w, err)
		return
	}
	httpx.JSON(w, http.StatusOK, f)
}

func (s *Service) taskAction(w http.ResponseWriter, r *http.Request) {
	p := auth.Of(r.Context())
	name, action := r.PathValue("name"), r.PathValue("action")
	if action == "forward" {
		var req ForwardReq
		if !readBody(w, r, &req) {
			return
		}
		f, err := s.Forward(p, name, req)
		if err != nil {
			writeErr(w, err)
			return
		}
		httpx.JSON(w, http.StatusOK, f)
		return
	}
	var req ActionReq
	body, ok := read(w, r)
	if !ok {
		return
	}
	if len(bytes.TrimSpace(body)) > 0 {
		if err := DecodeOne(body, &req); err != nil {
			httpx.Error(w, http.StatusBadRequest, "bad body", err.Error())
			return
		}
	}
	f, err := s.Act(p, name, action, req)
	if err != nil {
		writeErr(w, err)
		return
	}
	httpx.JSON(w, http.StatusOK, f)
}

func read(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := httpx.ReadBody(w, r, maxBody)
	if err != nil {
		httpx.Error(w, http.StatusRequestEntityTooLarge, "body too large", fmt.Sprintf("limit %d bytes", maxBody))
		return nil, false
	}
	return body, true
}

func readBody(w http.ResponseWriter, r *http.Request, v any) bool {
	body, ok := read(w, r)
	if !ok {
		return false
	}
	if err := DecodeOne(body, v); err != nil {
		httpx.Error(w, http.StatusBadRequest, "bad body", err.Error())
		return false
	}
	return true
}

// DecodeOne decodes exactly one JSON object (not null, no trailing data);
// unknown members are refused, so a typo ("target") is a 400, not an
// order to nobody.
func DecodeOne(b []byte, v any) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return errors.New("want a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
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
	case errors.Is(err, ErrNotFound), errors.Is(err, twin.ErrNotFound):
		httpx.Error(w, http.StatusNotFound, "not found", err.Error())
	case errors.Is(err, ErrBad), errors.Is(err, twin.ErrBadText):
		httpx.Error(w, http.StatusBadRequest, "bad request", err.Error())
	case errors.Is(err, ErrForbidden):
		httpx.Error(w, http.StatusForbidden, "forbidden", err.Error())
	case errors.Is(err, ErrTransition):
		httpx.Error(w, http.StatusConflict, "conflict", err.Error())
	default:
		httpx.Error(w, http.StatusInternalServerError, "internal error", err.Error())
	}
}
