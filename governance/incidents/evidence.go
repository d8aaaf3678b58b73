package incidents

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"

	"github.com/citytwin/citytwin/auth"
	"github.com/citytwin/citytwin/internal/httpx"
	"github.com/citytwin/citytwin/twin"
)

// Evidence limits.
const (
	// MaxEvidenceBytes bounds one photo: a phone's JPEG resized by the
	// field page is ~200-600 KB; 4 MiB leaves room for one sent as taken.
	MaxEvidenceBytes = 4 << 20
	// MaxEvidencePerIncident bounds the photos on one incident.
	MaxEvidencePerIncident = 8
)

// evidenceTypes are the image types accepted, by what the bytes are
// (sniffed), never by what the client says they are.
var evidenceTypes = map[string]string{"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}

// Errors of evidence handling.
var (
	ErrEvidenceType = errors.New("evidence must be a JPEG, PNG or WebP image")
	ErrEvidenceSize = errors.New("evidence too large")
	ErrNoEvidence   = errors.New("evidence not found")
)

// EvidenceStore keeps evidence photos by id (content-addressed). The
// server passes a DirEvidence under --data on its own, a BlobEvidence over
// the JetStream Object Store with --nats.
type EvidenceStore interface {
	Put(ctx context.Context, id string, b []byte) error
	Get(ctx context.Context, id string) ([]byte, error)
}

// DirEvidence stores each photo as a file named by its id in a directory.
// It is local to one server: a server without --nats uses it.
type DirEvidence string

var evidenceID = regexp.MustCompile(`^[0-9a-f]{32}\.(jpg|png|webp)$`)

func (d DirEvidence) path(id string) (string, error) {
	if !evidenceID.MatchString(id) {
		return "", ErrNoEvidence
	}
	return filepath.Join(string(d), id[:2], id), nil
}

// Put writes the photo (once: the id is its hash) via a temporary file and
// a rename, so a reader never sees half a photo.
func (d DirEvidence) Put(_ context.Context, id string, b []byte) error {
	p, err := d.path(id)
	if err != nil {
		return err
	}
	if _, err := os.Stat(p); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("evidence dir: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), ".up-*")
	if err != nil {
		return fmt.Errorf("evidence write: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("evidence write: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("evidence sync: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("evidence close: %w", err)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return fmt.Errorf("evidence rename: %w", err)
	}
	return nil
}

// Blobs is a store of write-once blobs shared by every server of a twin:
// spine.Blobs, a JetStream Object Store bucket. A missing blob is an error
// wrapping fs.ErrNotExist.
type Blobs interface {
	Put(ctx context.Context, name string, b []byte) error
	Get(ctx context.Context, name string) ([]byte, error)
}

// BlobEvidence keeps photos in shared Blobs: with --nats every server of
// the twin serves a photo whichever server received it (DirEvidence would
// leave it on one server's disk).
type BlobEvidence struct{ Blobs Blobs }

// Put stores the photo under its id (written once: the id is its hash).
func (e BlobEvidence) Put(ctx context.Context, id string, b []byte) error {
	if !evidenceID.MatchString(id) {
		return ErrNoEvidence
	}
	return e.Blobs.Put(ctx, id, b)
}

// Get reads a photo; a missing one is ErrNoEvidence.
func (e BlobEvidence) Get(ctx context.Context, id string) ([]byte, error) {
	if !evidenceID.MatchString(id) {
		return nil, ErrNoEvidence
	}
	b, err := e.Blobs.Get(ctx, id)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNoEvidence
	}
	return b, err
}

// Get reads a photo.
func (d DirEvidence) Get(_ context.Context, id string) ([]byte, error) {
	p, err := d.path(id)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNoEvidence
	}
	return b, err
}

// CheckEvidence decides whether b is an acceptable photo and returns its
// content type and id (hash of the bytes + extension).
func CheckEvidence(b []byte) (ctype, id string, err error) {
	if len(b) == 0 {
		return "", "", fmt.Errorf("%w: empty body", ErrEvidenceType)
	}
	if len(b) > MaxEvidenceBytes {
		return "", "", fmt.Errorf("%w: %d bytes, limit %d", ErrEvidenceSize, len(b), MaxEvidenceBytes)
	}
	ctype = http.DetectContentType(b)
	ext, ok := evidenceTypes[ctype]
	if !ok {
		return "", "", fmt.Errorf("%w (got %s)", ErrEvidenceType, ctype)
	}
	sum := sha256.Sum256(b)
	return ctype, hex.EncodeToString(sum[:16]) + "." + ext, nil
}

// AddEvidence stores a photo for an incident and references it from the
// incident's props ("evidence": [{id, type, bytes, by, at}]). The assigned
// worker (field role) or an operator in scope may add one while the
// incident is open or resolved, not once closed.
func (s *Service) AddEvidence(ctx context.Context, p auth.Principal, name string, b []byte) (*twin.Feature, map[string]any, error) {
	if s.opts.Evidence == nil {
		return nil, nil, fmt.Errorf("%w: this server keeps no evidence", ErrForbidden)
	}
	id := twin.NewID(twin.Incidents, name)
	cur, ok := s.tw.Get(id)
	if !ok || !p.Sees(cur) {
		return nil, nil, fmt.Errorf("%s: %w", name, ErrNotFound)
	}
	if err := mayAddEvidence(p, cur); err != nil {
		return nil, nil, err
	}
	ctype, eid, err := CheckEvidence(b)
	if err != nil {
		return nil, nil, err
	}
	if err := s.opts.Evidence.Put(ctx, eid, b); err != nil {
		return nil, nil, err
	}
	now := s.opts.Clock.Now()
	ref := map[string]any{"id": eid, "type": ctype, "bytes": float64(len(b)), "by": p.Subject, "at": stamp(now)}
	c, changed, err := s.tw.Update(id, func(f *twin.Feature) (*twin.Feature, error) {
		if f == nil {
			return nil, ErrNotFound
		}
		if err := mayAddEvidence(p, f); err != nil {
			return nil, err
		}
		list := asList(f.Props.Get("evidence"))
		for _, e := range list {
			if m, _ := e.(map[string]any); m["id"] == eid {
				return nil, nil // the same photo again: nothing to add
			}
		}
		if len(list) >= MaxEvidencePerIncident {
			return nil, fmt.Errorf("%w: at most %d photos per incident", ErrEvidenceSize, MaxEvidencePerIncident)
		}
		f.Props.Set("evidence", append(list, ref))
		f.Props.Set("history", append(asList(f.Props.Get("history")), map[string]any{"action": "evidence", "actor": p.Subject, "at": stamp(now), "evidence": eid}))
		return f, nil
	})
	if err != nil {
		return nil, nil, err
	}
	if !changed {
		cur, _ = s.tw.Get(id)
		return cur, ref, nil
	}
	return c.New, ref, nil
}

func mayAddEvidence(p auth.Principal, f *twin.Feature) error {
	switch {
	case p.Role == auth.Planner:
		return fmt.Errorf("%w: planners read only", ErrForbidden)
	case p.Role == auth.Field && f.Prop("assignee") != twin.NewID(twin.Workers, p.Subject).String():
		return fmt.Errorf("%w: incident is not assigned to you", ErrForbidden)
	case f.Prop("state") == Closed:
		return fmt.Errorf("%w: the incident is closed", ErrTransition)
	}
	return nil
}

// Evidence returns a photo referenced by an incident p sees.
func (s *Service) Evidence(ctx context.Context, p auth.Principal, name, eid string) ([]byte, string, error) {
	f, ok := s.tw.Get(twin.NewID(twin.Incidents, name))
	if !ok || !p.Sees(f) || s.opts.Evidence == nil {
		return nil, "", fmt.Errorf("%s: %w", name, ErrNotFound)
	}
	for _, e := range asList(f.Props.Get("evidence")) {
		if m, _ := e.(map[string]any); m["id"] == eid {
			b, err := s.opts.Evidence.Get(ctx, eid)
			if err != nil {
				return nil, "", err
			}
			ct, _ := m["type"].(string)
			return b, ct, nil
		}
	}
	return nil, "", fmt.Errorf("%s/%s: %w", name, eid, ErrNoEvidence)
}

// EvidenceHandler serves POST /api/incidents/{name}/evidence: the body is
// the photo itself (image/jpeg, image/png or image/webp, at most
// MaxEvidenceBytes). 201 with the reference and the incident.
func (s *Service) EvidenceHandler(w http.ResponseWriter, r *http.Request) {
	b, ok := ReadPhoto(w, r)
	if !ok {
		return
	}
	f, ref, err := s.AddEvidence(r.Context(), auth.Of(r.Context()), r.PathValue("name"), b)
	switch {
	case PhotoError(w, err):
	case err != nil:
		writeErr(w, err)
	default:
		httpx.JSON(w, http.StatusCreated, map[string]any{"evidence": ref, "incident": f})
	}
}

// EvidenceGetHandler serves GET /api/incidents/{name}/evidence/{id}: the
// photo, to principals who see the incident (404 otherwise, as if absent).
func (s *Service) EvidenceGetHandler(w http.ResponseWriter, r *http.Request) {
	b, ct, err := s.Evidence(r.Context(), auth.Of(r.Context()), r.PathValue("name"), r.PathValue("id"))
	switch {
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrNoEvidence):
		httpx.Error(w, http.StatusNotFound, "not found", err.Error())
		return
	case err != nil:
		httpx.Error(w, http.StatusInternalServerError, "evidence read failed", err.Error())
		return
	}
	WritePhoto(w, b, ct, r.PathValue("id"))
}

// WritePhoto answers a GET of evidence photo id (incidents' and tasks'):
// the bytes with their sniffed type, never re-sniffed or run by the
// browser, cached for a day (ids are content addresses).
func WritePhoto(w http.ResponseWriter, b []byte, ctype, id string) {
	h := w.Header()
	h.Set("Content-Type", ctype)
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "private, max-age=86400, immutable") // content-addressed
	h.Set("Content-Security-Policy", "default-src 'none'")
	h.Set("ETag", `"`+id+`"`)
	_, _ = w.Write(b)
}

// ReadPhoto reads an evidence upload's body, at most MaxEvidenceBytes; on
// a larger body it answers 413 and returns false.
func ReadPhoto(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	b, err := httpx.ReadBody(w, r, MaxEvidenceBytes)
	if err != nil {
		httpx.Error(w, http.StatusRequestEntityTooLarge, "evidence too large", fmt.Sprintf("limit %d bytes", MaxEvidenceBytes))
		return nil, false
	}
	return b, true
}

// PhotoError answers an upload refused for its content (415, 413) and
// reports whether err was one of those.
func PhotoError(w http.ResponseWriter, err error) bool {
	switch {
	case errors.Is(err, ErrEvidenceType):
		httpx.Error(w, http.StatusUnsupportedMediaType, "unsupported evidence type", err.Error())
	case errors.Is(err, ErrEvidenceSize):
		httpx.Error(w, http.StatusRequestEntityTooLarge, "evidence too large", err.Error())
	default:
		return false
	}
	return true
}
