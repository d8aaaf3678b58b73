package rules

import (
	"errors"
	"io"
	"mime"
	"net/http"

	"github.com/citytwin/citytwin/auth"
	"github.com/citytwin/citytwin/internal/httpx"
	"github.com/citytwin/citytwin/twin"
)

// maxRulesBody bounds PUT /api/rules bodies (bytes).
const maxRulesBody = 1 << 20

// GetRules answers GET /api/rules with the running rules file as given
// (YAML, or JSON when it was loaded as JSON).
func (e *Engine) GetRules(w http.ResponseWriter, r *http.Request) {
	rs := e.RuleSet()
	if rs == nil {
		w.Header().Set("Content-Type", "application/yaml")
		_, _ = io.WriteString(w, "rules: []\n")
		return
	}
	ct := "application/yaml"
	if rs.JSON {
		ct = "application/json"
	}
	w.Header().Set("Content-Type", ct)
	_, _ = w.Write(rs.Source)
}

// PutRules answers PUT /api/rules: the body (YAML, or JSON by Content-Type)
// replaces the running rules. An invalid file is answered 400 with the
// precise message, and the previous rules keep running.
func (e *Engine) PutRules(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxRulesBody+1))
	if err != nil {
		httpx.Error(w, http.StatusBadRequest, "read body", err.Error())
		return
	}
	if len(body) > maxRulesBody {
		httpx.Error(w, http.StatusRequestEntityTooLarge, "rules file too large", "limit 1 MiB")
		return
	}
	name := "rules.yaml"
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == "application/json" {
		name = "rules.json"
	}
	rs, err := Parse(name, body)
	if err != nil {
		httpx.Error(w, http.StatusBadRequest, "invalid rules", err.Error())
		return
	}
	rs.JSON = rs.JSON || name == "rules.json"
	e.Load(rs)
	httpx.JSON(w, http.StatusOK, map[string]any{"loaded": len(rs.Rules), "rules": rs.ruleNames()})
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
)

var errTransition = errors.New("invalid transition")

func (e *Engine) action(w http.ResponseWriter, r *http.Request, act string) {
	p := auth.Of(r.Context())
	actor := p.Subject
	if actor == "" {
		actor = "anonymous"
	}
	name := r.PathValue("name")
	id, err := twin.MakeID(string(twin.Alerts), name)
	if err != nil {
		httpx.Error(w, http.StatusNotFound, "alert not found", name)
		return
	}
	if f, ok := e.tw.Get(id); !ok || !p.Sees(f) {
		httpx.Error(w, http.StatusNotFound, "alert not found", name)
		return
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
			cur.Props["state"] = StateAcked
			cur.Props["acked_by"] = actor
			cur.Props["acked_at"] = ts(now)
		case act == "close" && (from == StateOpen || from == StateAcked):
			cur.Props["state"] = StateClosed
			cur.Props["closed_by"] = actor
			cur.Props["closed_at"] = ts(now)
		default:
			return nil, errTransition
		}
		cur.Props["history"] = appendHistory(cur.Props["history"], map[string]any{"at": ts(now), "event": act, "by": actor})
		return cur, nil
	})
	switch {
	case errors.Is(err, twin.ErrNotFound):
		httpx.Error(w, http.StatusNotFound, "alert not found", name)
		return
	case errors.Is(err, errTransition):
		httpx.Error(w, http.StatusConflict, "invalid transition", map[string]string{"state": from, "action": act})
		return
	case err != nil:
		httpx.Error(w, http.StatusInternalServerError, "alert update failed", err.Error())
		return
	}
	if act == "close" {
		for k, n := range e.al.open {
			if n == name {
				delete(e.al.open, k)
			}
		}
	}
	e.publishAlert(ch.New)
	e.alertStateChanged(ch.New)
	httpx.JSON(w, http.StatusOK, ch.New)
}
