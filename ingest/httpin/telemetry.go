package httpin

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/citytwin/citytwin/auth"
	"github.com/citytwin/citytwin/ingest/telemetry"
	"github.com/citytwin/citytwin/internal/httpx"
	"github.com/citytwin/citytwin/twin"
)

// LineResult is one NDJSON line's fate.
type LineResult struct {
	Line    int    `json:"line"` // 1-based
	ID      string `json:"id,omitempty"`
	Outcome string `json:"outcome"` // applied, history, duplicate, error
	Reason  string `json:"reason,omitempty"`
	Error   string `json:"error,omitempty"`
}

// TelemetryResponse is the body of POST /api/telemetry.
type TelemetryResponse struct {
	Results []LineResult `json:"results"`
}

// Telemetry handles POST /api/telemetry: NDJSON, one CONTRACT §3 object per
// line with "id" (the object's name). Each line is applied independently
// and reported; rejected lines are also dead-lettered. Blank lines are
// skipped but keep their numbers. The whole body is read first, so a body
// over MaxBody is refused (413) with nothing applied.
func (a *API) Telemetry(w http.ResponseWriter, r *http.Request) {
	body, ok := a.readBody(w, r)
	if !ok {
		return
	}
	p, scoped := auth.FromContext(r.Context())
	now := a.opts.Clock.Now()
	// One result per line: sized once for the body (a 500-line body grew
	// these slices a dozen times per request).
	lines := bytes.Count(body, []byte{'\n'}) + 1
	sc := a.getScratch(lines)
	defer a.scratch.Put(sc)
	resp := TelemetryResponse{Results: sc.results[:0]}
	// With SubmitAll, valid lines are collected (batch, at their result's
	// index) and go to the log together after the loop.
	var batch []Line
	var at []int
	if a.opts.SubmitAll != nil {
		batch, at = make([]Line, 0, lines), make([]int, 0, lines)
	}
	// On the leader the lines go straight into the twin (Options.Local);
	// applied holds their results' indexes, for the change log's word.
	local := a.opts.Local != nil && a.opts.Committed != nil && a.opts.Local()
	applied := sc.applied[:0]
	for n := 1; len(body) > 0; n++ {
		var line []byte
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			line, body = body[:i], body[i+1:]
		} else {
			line, body = body, nil
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		res := LineResult{Line: n}
		outcome, later, err := a.line(r.Context(), line, now, &res, scoped, p, local)
		var sub *submitError
		switch {
		case later.Name != "":
			at = append(at, len(resp.Results))
			batch = append(batch, later)
		case errors.As(err, &sub):
			// The log's applier dead-lettered and counted it, or the log
			// could not take it; either way nothing more to do here.
			res.Outcome = "error"
			res.Reason = string(telemetry.ReasonOf(sub.err))
			if res.Reason == "" {
				res.Reason = "unavailable"
			}
			res.Error = sub.err.Error()
		case err != nil:
			res.Outcome = "error"
			res.Reason = string(telemetry.ReasonOf(err))
			if res.Reason == "" {
				res.Reason = "apply_failed"
			}
			res.Error = err.Error()
			a.metrics.DeadLetters.WithLabelValues(res.Reason).Inc()
			a.metrics.Message("http", telemetry.OutcomeDeadletter).Inc()
			if a.opts.DeadLetter != nil {
				a.opts.DeadLetter(r.Context(), DeadLetterTopic, bytes.Clone(line), res.Reason)
			}
		default:
			res.Outcome = outcome
			if local || (a.opts.Submit == nil && a.opts.SubmitAll == nil) { // else the applier counts it
				a.metrics.Message("http", outcome).Inc()
			}
			if local {
				applied = append(applied, len(resp.Results))
			}
		}
		resp.Results = append(resp.Results, res)
	}
	if len(applied) > 0 {
		if err := a.opts.Committed(r.Context()); err != nil {
			// Leadership lost before the change log took them: they may
			// be taken back. Not the lines' fault; sent again, a line the
			// log did take answers duplicate.
			for _, k := range applied {
				res := &resp.Results[k]
				res.Outcome, res.Reason, res.Error = "error", "unavailable", err.Error()
			}
		}
	}
	if len(batch) > 0 {
		for k, sub := range a.opts.SubmitAll(r.Context(), batch) {
			res := &resp.Results[at[k]]
			if sub.Err != nil {
				res.Outcome = "error"
				res.Reason = string(telemetry.ReasonOf(sub.Err))
				if res.Reason == "" {
					res.Reason = "unavailable"
				}
				res.Error = sub.Err.Error()
				continue
			}
			res.Outcome = sub.Outcome
		}
	}
	if len(resp.Results) == 0 {
		httpx.Error(w, http.StatusBadRequest, "no telemetry lines", "the body holds NDJSON: one JSON object per line, each with \"id\"")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	sc.out = resp.appendJSON(sc.out[:0])
	_, _ = w.Write(sc.out)
	// Keep what grew, without the strings of this request's results.
	clear(resp.Results)
	sc.results, sc.applied = resp.Results[:0], applied[:0]
}

// telemetryScratch is what one telemetry request needs and the next can
// reuse: a 500-line body's results (72 B each), the indexes of the lines
// it applied and its answer (~48 B a line) were ~70 KB of new memory per
// request, a fifth of what a fenced write allocated (issue 16 goal 1).
type telemetryScratch struct {
	results []LineResult
	applied []int
	out     []byte
}

// getScratch returns a scratch sized for lines lines.
func (a *API) getScratch(lines int) *telemetryScratch {
	sc, _ := a.scratch.Get().(*telemetryScratch)
	if sc == nil {
		sc = &telemetryScratch{}
	}
	if cap(sc.results) < lines {
		sc.results = make([]LineResult, 0, lines)
		sc.applied = make([]int, 0, lines)
		sc.out = make([]byte, 0, 48*lines+16)
	}
	return sc
}

// appendJSON writes r byte for byte as json.NewEncoder(w).Encode(r) does
// (field order, omitempty, HTML-safe escaping, the trailing newline)
// without reflection: a 500-line body's answer went through encoding/json
// once per line result.
func (r *TelemetryResponse) appendJSON(b []byte) []byte {
	b = append(b, `{"results":[`...)
	for i := range r.Results {
		l := &r.Results[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"line":`...)
		b = strconv.AppendInt(b, int64(l.Line), 10)
		for _, f := range [...]struct{ key, v string }{{`,"id":`, l.ID}, {`,"outcome":`, l.Outcome}, {`,"reason":`, l.Reason}, {`,"error":`, l.Error}} {
			if f.v == "" && f.key != `,"outcome":` {
				continue // omitempty
			}
			b = append(b, f.key...)
			b = twin.AppendJSONString(b, f.v)
		}
		b = append(b, '}')
	}
	return append(b, "]}\n"...)
}

// submitError is what Options.Submit refused: already handled.
type submitError struct{ err error }

func (e *submitError) Error() string { return e.err.Error() }
func (e *submitError) Unwrap() error { return e.err }

// line decodes and applies (or journals) one NDJSON line. With
// Options.SubmitAll a valid line is not submitted but returned as later
// (its Name set), to go to the log with the body's other lines.
func (a *API) line(ctx context.Context, line []byte, now time.Time, res *LineResult, scoped bool, p auth.Principal, local bool) (outcome string, later Line, err error) {
	m, err := telemetry.Decode(line, now, a.opts.Limits)
	res.ID = m.Name
	if err != nil {
		return "", Line{}, err
	}
	if m.Name == "" {
		return "", Line{}, &telemetry.Error{Reason: telemetry.BadField, Detail: `"id" (the object's name) is required`}
	}
	if err := telemetry.ValidName(m.Name); err != nil {
		return "", Line{}, err
	}
	if scoped && p.Role == auth.Field {
		// A grid worker's phone moves its own worker object and nothing
		// else: the name must be the token's subject and resolve to a
		// worker (never a vehicle or device of the same name, never an
		// auto-registered new object).
		if id, ok := a.tw.Resolve(m.Name); !ok || m.Name != p.Subject || id != twin.NewID(twin.Workers, p.Subject) {
			return "", Line{}, telemetry.Errorf(telemetry.NotYours, "a field token reports only its own worker (workers/%s), not %q", p.Subject, m.Name)
		}
	}
	if scoped && !p.SeesAll() {
		// Out of scope is as if absent (CONTRACT §7); a principal of the
		// whole city sees everything, no look-up needed.
		if id, ok := a.tw.Resolve(m.Name); ok {
			if f, ok := a.tw.Get(id); ok && !p.Sees(f) {
				return "", Line{}, telemetry.Errorf(telemetry.UnknownDevice, "no vehicle, worker or device named %q", m.Name)
			}
		}
	}
	if local {
		outcome, err = telemetry.Apply(a.tw, m.Name, m, a.opts.AutoRegister)
		if !errors.Is(err, twin.ErrNotLeader) {
			return outcome, Line{}, err
		}
		// No longer the leader: the log takes it, as on any server.
	}
	if a.opts.SubmitAll != nil {
		return "", Line{Name: m.Name, TS: m.TS, Body: line}, nil
	}
	if a.opts.Submit != nil {
		out, err := a.opts.Submit(ctx, m.Name, m.TS, line)
		if err != nil {
			return "", Line{}, &submitError{err}
		}
		return out, Line{}, nil
	}
	outcome, err = telemetry.Apply(a.tw, m.Name, m, a.opts.AutoRegister)
	return outcome, Line{}, err
}
