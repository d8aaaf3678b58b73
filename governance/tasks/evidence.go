package tasks

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/citytwin/citytwin/auth"
	"github.com/citytwin/citytwin/governance/incidents"
	"github.com/citytwin/citytwin/internal/httpx"
	"github.com/citytwin/citytwin/twin"
)

// maxTaskPhotos bounds the photos on one task (a report carries at most
// maxPhotos references; a few more for retakes).
const maxTaskPhotos = 16

// AddEvidence stores a photo for a task (the body of POST
// /api/tasks/{name}/evidence) in the server's evidence store, the same
// store and checks as an incident's photos (incidents.CheckEvidence: the
// bytes decide the type, content-addressed id), and lists it in the task's
// `evidence` as {"type":"photo","id",...}; the report that follows names
// it in its photos. Whoever may act on the task may add one while it is
// open: a task outside p's scope is ErrNotFound, one p sees but may not
// act on ErrForbidden, a closed one ErrTransition.
func (s *Service) AddEvidence(ctx context.Context, p auth.Principal, name string, b []byte) (*twin.Feature, map[string]any, error) {
	cur, err := s.Get(p, name)
	if err != nil {
		return nil, nil, err
	}
	if s.opts.Evidence == nil {
		return nil, nil, fmt.Errorf("%w: this server keeps no evidence", ErrForbidden)
	}
	if err := mayAddEvidence(p, cur); err != nil {
		return nil, nil, err
	}
	ctype, eid, err := incidents.CheckEvidence(b)
	if err != nil {
		return nil, nil, err
	}
	if err := s.opts.Evidence.Put(ctx, eid, b); err != nil {
		return nil, nil, err
	}
	now := s.opts.Clock.Now()
	ref := map[string]any{"type": "photo", "id": eid, "content_type": ctype, "bytes": float64(len(b)), "by": p.Subject, "at": stamp(now)}
	c, changed, err := s.tw.Update(cur.ID, func(f *twin.Feature) (*twin.Feature, error) {
		if f == nil {
			return nil, ErrNotFound
		}
		if err := mayAddEvidence(p, f); err != nil {
			return nil, err
		}
		list := asList(f.Props.Get("evidence"))
		n := 0
		for _, e := range list {
			m, _ := e.(map[string]any)
			if m["type"] != "photo" {
				continue
			}
			if m["id"] == eid {
				return nil, nil // the same photo again: nothing to add
			}
			n++
		}
		if n >= maxTaskPhotos {
			return nil, fmt.Errorf("%w: at most %d photos per task", incidents.ErrEvidenceSize, maxTaskPhotos)
		}
		f.Props.Set("evidence", append(list, ref))
		h := step("evidence", p.Subject, now)
		h["evidence"] = eid
		f.Props.Set("history", append(asList(f.Props.Get("history")), h))
		return f, nil
	})
	if err != nil {
		return nil, nil, err
	}
	if !changed {
		cur, _ = s.tw.Get(cur.ID)
		for _, e := range asList(cur.Props.Get("evidence")) {
			if m, _ := e.(map[string]any); m["type"] == "photo" && m["id"] == eid {
				ref = m // as first added (by, at)
			}
		}
		return cur, ref, nil
	}
	return c.New, ref, nil
}

func mayAddEvidence(p auth.Principal, f *twin.Feature) error {
	if !mayAct(p, f) {
		return fmt.Errorf("%w: task %s is assigned to %s", ErrForbidden, f.ID.Name, f.Prop("assignee"))
	}
	if f.Prop("state") == Closed {
		return fmt.Errorf("%w: the task is closed", ErrTransition)
	}
	return nil
}

// Evidence returns a photo listed in a task p sees (404 otherwise, as if
// absent: a photo is scoped like its task).
func (s *Service) Evidence(ctx context.Context, p auth.Principal, name, eid string) ([]byte, string, error) {
	f, err := s.Get(p, name)
	if err != nil {
		return nil, "", err
	}
	if s.opts.Evidence == nil {
		return nil, "", fmt.Errorf("task %s evidence %s: %w", name, eid, ErrNotFound)
	}
	for _, e := range asList(f.Props.Get("evidence")) {
		m, _ := e.(map[string]any)
		if m["type"] != "photo" || m["id"] != eid {
			continue
		}
		b, err := s.opts.Evidence.Get(ctx, eid)
		if errors.Is(err, incidents.ErrNoEvidence) {
			return nil, "", fmt.Errorf("task %s evidence %s: %w", name, eid, ErrNotFound)
		}
		if err != nil {
			return nil, "", err
		}
		ct, _ := m["content_type"].(string)
		return b, ct, nil
	}
	return nil, "", fmt.Errorf("task %s evidence %s: %w", name, eid, ErrNotFound)
}

// evidencePost serves POST /api/tasks/{name}/evidence: the body is the
// photo itself (JPEG, PNG or WebP by its bytes, at most
// incidents.MaxEvidenceBytes). 201 {"evidence": ref, "task": task}.
func (s *Service) evidencePost(w http.ResponseWriter, r *http.Request) {
	b, ok := incidents.ReadPhoto(w, r)
	if !ok {
		return
	}
	f, ref, err := s.AddEvidence(r.Context(), auth.Of(r.Context()), r.PathValue("name"), b)
	switch {
	case incidents.PhotoError(w, err):
	case err != nil:
		writeErr(w, err)
	default:
		httpx.JSON(w, http.StatusCreated, map[string]any{"evidence": ref, "task": f})
	}
}

// evidenceGet serves GET /api/tasks/{name}/evidence/{id}: the photo, to
// principals who see the task.
func (s *Service) evidenceGet(w http.ResponseWriter, r *http.Request) {
	b, ct, err := s.Evidence(r.Context(), auth.Of(r.Context()), r.PathValue("name"), r.PathValue("id"))
	if err != nil {
		writeErr(w, err)
		return
	}
	incidents.WritePhoto(w, b, ct, r.PathValue("id"))
}
