package rules

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/citytwin/citytwin/auth"
	"github.com/citytwin/citytwin/internal/httpx"
	"github.com/citytwin/citytwin/twin"
)

// ModifiedHeader on PUT /api/rules marks the body as a rules file offered
// by a server (its --rules file, at start and at each edit), with the
// file's modification time (RFC 3339): the twin takes it only if it is
// newer than the rules it holds and not the file it took last (Publish);
// else 412 and nothing changes.
const ModifiedHeader = "X-Twin-Rules-Modified"

// maxRulesBody bounds PUT /api/rules bodies (bytes): the rules travel in
// one change-log record (maxSharedSource).
const maxRulesBody = maxSharedSource

// GetRules answers GET /api/rules. A city-level token gets the running
// rules file as given (YAML, or JSON when it was loaded as JSON). Any other
// token gets, as JSON, the rules that concern its region: those owned by
// the tiers above it (the city, its district) and those owned by its region
// or below. `?format=json` (or Accept: application/json) asks for JSON
// whatever the tier, so the client can read the rules' display names
// (title, title_zh) without a YAML parser.
func (e *Engine) GetRules(w http.ResponseWriter, r *http.Request) {
	p := auth.Of(r.Context())
	e.Sync() // the twin's rules, on whichever server answers
	rs := e.RuleSet()
	if at, ok := e.SharedSetAt(); ok && !at.IsZero() {
		w.Header().Set("Last-Modified", at.UTC().Format(http.TimeFormat))
	}
	wantJSON := r.URL.Query().Get("format") == "json" || acceptsJSON(r.Header.Get("Accept"))
	if rs == nil {
		if wantJSON {
			httpx.JSON(w, http.StatusOK, map[string]any{"rules": []any{}})
			return
		}
		w.Header().Set("Content-Type", "application/yaml")
		_, _ = io.WriteString(w, "rules: []\n")
		return
	}
	if p.Region == auth.CityCode && !wantJSON {
		ct := "application/yaml"
		if rs.JSON {
			ct = "application/json"
		}
		w.Header().Set("Content-Type", ct)
		_, _ = w.Write(rs.Source)
		return
	}
	var mine []*Rule
	for _, rule := range rs.Rules {
		if o := rule.owner(); p.Covers(o) || covers(o, p.Region) {
			mine = append(mine, rule)
		}
	}
	b, err := marshalSet(rs.TimeZone, rs.SLA, mine)
	if err != nil {
		httpx.Error(w, http.StatusInternalServerError, "encode rules", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

// acceptsJSON reports whether an Accept header asks for JSON first (and not
// YAML, which the city's file is by default).
func acceptsJSON(accept string) bool {
	for _, part := range strings.Split(accept, ",") {
		mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		return mt == "application/json"
	}
	return false
}

// covers reports whether region code outer contains code inner (codes nest
// by prefix; the city contains everything).
func covers(outer, inner string) bool {
	return outer == auth.CityCode || outer == inner || strings.HasPrefix(inner, outer)
}

// PutRules answers PUT /api/rules: the body (YAML, or JSON by Content-Type)
// replaces the rules owned by the caller's region and the regions below it;
// rules owned by other tiers keep running. A rule without `owner` is owned
// by the caller's region. Only a city-level admin sets `timezone` and
// `sla`. An invalid file is answered 400 with the precise message, a rule
// owned outside the caller's region 403, and the previous rules keep
// running. The rules become the twin's (Publish: every server runs them,
// and so does every restart). A body marked with ModifiedHeader is a
// rules file offered by a server: 412 and nothing changes when it is stale.
func (e *Engine) PutRules(w http.ResponseWriter, r *http.Request) {
	var file *FileMark
	if h := r.Header.Get(ModifiedHeader); h != "" {
		t, err := time.Parse(time.RFC3339Nano, h)
		if err != nil {
			httpx.Error(w, http.StatusBadRequest, "bad "+ModifiedHeader, err.Error())
			return
		}
		file = &FileMark{Modified: t}
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxRulesBody+1))
	if err != nil {
		httpx.Error(w, http.StatusBadRequest, "read body", err.Error())
		return
	}
	if len(body) > maxRulesBody {
		httpx.Error(w, http.StatusRequestEntityTooLarge, "rules file too large", "limit 512 KiB")
		return
	}
	name := "rules.yaml"
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == "application/json" {
		name = "rules.json"
	}
	e.Sync() // a tier's rules merge with the twin's
	p := auth.Of(r.Context())
	rs, status, err := e.tierRules(p, name, body)
	if err != nil {
		msg := "invalid rules"
		switch status {
		case http.StatusForbidden:
			msg = "forbidden"
		case http.StatusConflict:
			msg = "rule name taken"
		}
		httpx.Error(w, status, msg, err.Error())
		return
	}
	by := p.Subject
	if by == "" {
		by = "anonymous"
	}
	if file != nil {
		file.SHA256 = fileHash(body)
	}
	switch err := e.Publish(rs, by, file); {
	case errors.Is(err, ErrRulesChanged):
		httpx.Error(w, http.StatusPreconditionFailed, "stale rules file", err.Error())
		return
	case errors.Is(err, errTooLarge):
		httpx.Error(w, http.StatusRequestEntityTooLarge, "rules file too large", err.Error())
		return
	case errors.Is(err, twin.ErrNotLeader):
		httpx.Error(w, http.StatusServiceUnavailable, "not the leader", err.Error())
		return
	case err != nil:
		httpx.Error(w, http.StatusInternalServerError, "rules not stored", err.Error())
		return
	}
	httpx.JSON(w, http.StatusOK, map[string]any{"loaded": len(rs.Rules), "rules": rs.ruleNames()})
}

// tierRules parses a PUT /api/rules body for principal p and returns the
// rule set to run: the body's rules plus the running rules owned outside
// p's region. The status says how to answer an error.
func (e *Engine) tierRules(p auth.Principal, name string, body []byte) (*RuleSet, int, error) {
	rs, err := Parse(name, body)
	if err != nil {
		return nil, http.StatusBadRequest, err
	}
	rs.JSON = rs.JSON || name == "rules.json"
	for _, rule := range rs.Rules {
		if rule.Owner == "" && p.Region != auth.CityCode {
			rule.Owner = p.Region
		}
		if !p.Covers(rule.owner()) {
			return nil, http.StatusForbidden, fmt.Errorf("rule %q is owned by %s, outside your region %s", rule.Name, rule.owner(), p.Region)
		}
	}
	if p.Region == auth.CityCode {
		return rs, 0, nil // the whole set, kept as written
	}
	if rs.TimeZone != "" || len(rs.SLA) > 0 {
		return nil, http.StatusForbidden, errors.New("only a city-level admin sets timezone and sla")
	}
	running := e.RuleSet()
	merged := append([]*Rule(nil), rs.Rules...)
	tz, sla := "", map[string]Duration(nil)
	if running != nil {
		tz, sla = running.TimeZone, running.SLA
		names := map[string]bool{}
		for _, rule := range rs.Rules {
			names[rule.Name] = true
		}
		for _, rule := range running.Rules {
			if p.Covers(rule.owner()) {
				continue // replaced by the body
			}
			if names[rule.Name] {
				return nil, http.StatusConflict, fmt.Errorf("rule %q is owned by %s; pick another name", rule.Name, rule.owner())
			}
			merged = append(merged, rule)
		}
	}
	src, err := marshalSet(tz, sla, merged)
	if err != nil {
		return nil, http.StatusInternalServerError, err
	}
	out, err := Parse("rules.json", src)
	if err != nil {
		return nil, http.StatusBadRequest, err
	}
	return out, 0, nil
}

// AckAlert answers POST /api/alerts/{name}/ack.
func (e *Engine) AckAlert(w http.ResponseWriter, r *http.Request) { e.action(w, r, "ack") }

// CloseAlert answers POST /api/alerts/{name}/close.
func (e *Engine) CloseAlert(w http.ResponseWriter, r *http.Request) { e.action(w, r, "close") }

// The handlers are plain http.HandlerFuncs for the server's mux.
var (
	_ http.HandlerFunc = (*Engine)(nil).GetRules
	_ http.HandlerFunc = (*Engine)(nil).PutRules
	_ http.HandlerFunc = (*Engine)(nil).AckAlert
	_ http.HandlerFunc = (*Engine)(nil).CloseAlert
	_ http.HandlerFunc = (*Engine)(nil).BulkAck
)

var errTransition = errors.New("invalid transition")

func (e *Engine) action(w http.ResponseWriter, r *http.Request, act string) {
	name := r.PathValue("name")
	f, status, msg, detail := e.apply(auth.Of(r.Context()), name, act) //nolint:contextcheck // the risk update it triggers is detached on purpose (see apply)
	if status != http.StatusOK {
		httpx.Error(w, status, msg, detail)
		return
	}
	httpx.JSON(w, http.StatusOK, f)
}

// apply performs one ack or close by principal p on alert `name`. It answers
// the new alert, or the HTTP status, error and detail to report: alerts the
// principal cannot see are "not found", exactly as if they did not exist.
func (e *Engine) apply(p auth.Principal, name, act string) (*twin.Feature, int, string, any) {
	actor := p.Subject
	if actor == "" {
		actor = "anonymous"
	}
	id, err := twin.MakeID(string(twin.Alerts), name)
	if err != nil {
		return nil, http.StatusNotFound, "alert not found", name
	}
	if f, ok := e.tw.Get(id); !ok || !p.Sees(f) {
		return nil, http.StatusNotFound, "alert not found", name
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.clk.Now()
	var from string
	ch, _, err := e.tw.Update(id, func(cur *twin.Feature) (*twin.Feature, error) {
		if cur == nil {
			return nil, twin.ErrNotFound
		}
		from = cur.Prop("state")
		switch {
		case act == "ack" && from == StateOpen:
			cur.Props.Set("state", StateAcked)
			cur.Props.Set("acked_by", actor)
			cur.Props.Set("acked_at", ts(now))
		case act == "close" && (from == StateOpen || from == StateAcked):
			cur.Props.Set("state", StateClosed)
			cur.Props.Set("closed_by", actor)
			cur.Props.Set("closed_at", ts(now))
		default:
			return nil, errTransition
		}
		cur.Props.AppendList("history", map[string]any{"at": ts(now), "event": act, "by": actor}, maxHistory)
		return cur, nil
	})
	switch {
	case errors.Is(err, twin.ErrNotFound):
		return nil, http.StatusNotFound, "alert not found", name
	case errors.Is(err, errTransition):
		return nil, http.StatusConflict, "invalid transition", map[string]string{"state": from, "action": act}
	case err != nil:
		return nil, http.StatusInternalServerError, "alert update failed", err.Error()
	}
	if act == "close" {
		for k, n := range e.al.open {
			if n == name {
				delete(e.al.open, k)
			}
		}
	}
	e.alertStateChanged(ch.New) //nolint:contextcheck // detached on purpose: work that must outlive or stand apart from the caller's context
	return ch.New, http.StatusOK, "", nil
}

// maxBulkAck bounds one POST /api/alerts/ack: a wall screen acknowledges
// a group of alerts at once, never the whole city's history.
const maxBulkAck = 1000

// BulkAckResult is the answer of POST /api/alerts/ack: the names acked and,
// per name that was not, why (the status and error a single ack would give).
type BulkAckResult struct {
	Acked  []string         `json:"acked"`
	Failed []BulkAckFailure `json:"failed"`
}

// BulkAckFailure is one alert a bulk ack left alone.
type BulkAckFailure struct {
	Name   string `json:"name"`
	Status int    `json:"status"`
	Error  string `json:"error"`
}

// BulkAck answers POST /api/alerts/ack with {"names": ["a1", ...]}: each
// alert is acknowledged as by POST /api/alerts/{name}/ack, with the same
// region scope (an alert outside the token's region fails "alert not
// found"), so an operator triaging a flood acks a whole group in one call.
// It answers 200 with what was acked and what failed; 400 for a bad body.
func (e *Engine) BulkAck(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Names []string `json:"names"`
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		httpx.Error(w, http.StatusBadRequest, "invalid body", err.Error())
		return
	}
	if len(body.Names) == 0 || len(body.Names) > maxBulkAck {
		httpx.Error(w, http.StatusBadRequest, "invalid body", fmt.Sprintf("names: want 1..%d alert names", maxBulkAck))
		return
	}
	p := auth.Of(r.Context())
	out := BulkAckResult{Acked: []string{}, Failed: []BulkAckFailure{}}
	seen := make(map[string]bool, len(body.Names))
	for _, name := range body.Names {
		if seen[name] {
			continue
		}
		seen[name] = true
		if _, status, msg, _ := e.apply(p, name, "ack"); status != http.StatusOK { //nolint:contextcheck // as in action
			out.Failed = append(out.Failed, BulkAckFailure{Name: name, Status: status, Error: msg})
			continue
		}
		out.Acked = append(out.Acked, name)
	}
	httpx.JSON(w, http.StatusOK, out)
}

// AlertAction acknowledges ("ack") or closes ("close") an alert as p, as
// POST /api/alerts/{name}/{ack,close} does, for callers inside the process
// (the demo's simulated operators). A refusal is an error naming the
// status the HTTP call would answer.
func (e *Engine) AlertAction(p auth.Principal, name, act string) (*twin.Feature, error) {
	f, status, msg, detail := e.apply(p, name, act) //nolint:contextcheck // as in action
	if status != http.StatusOK {
		return nil, fmt.Errorf("alert %s %s: %s (%d): %v", act, name, msg, status, detail)
	}
	return f, nil
}
