package incidents

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/color"
	"image/png"
	"io/fs"
	"testing"

	"github.com/citytwin/citytwin/auth"
	"github.com/citytwin/citytwin/internal/clock"
	"github.com/citytwin/citytwin/twin"
)

func pngBytes(t testing.TB) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 4, 4))
	img.Set(1, 1, color.RGBA{R: 200, A: 255})
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestEvidence: the assigned worker attaches a photo (stored, referenced
// from the incident's props, in its history); another worker, a planner and
// anything that is not an image are refused; the photo is served back only
// to principals who see the incident.
func TestEvidence(t *testing.T) {
	clk := clock.NewFake(t0)
	tw := twin.New(twin.Options{Clock: clk, Enricher: fakeLocator{}})
	if _, err := tw.Put(&twin.Feature{ID: twin.NewID(twin.Workers, "mate"), Geometry: there, Props: twin.NewProps(map[string]any{"status": "available"})}); err != nil {
		t.Fatal(err)
	}
	s := New(tw, Options{Clock: clk, AutoDispatch: true, Enricher: fakeLocator{}, Evidence: DirEvidence(t.TempDir())})
	inc, _, err := s.Report(op, Report{Type: "litter", Lon: there[0], Lat: there[1]})
	if err != nil || inc.Prop("assignee") != "workers/mate" {
		t.Fatalf("report: %v %q", err, inc.Prop("assignee"))
	}
	ctx := context.Background()
	mate := auth.Principal{Subject: "mate", Role: auth.Field, Region: "500105002"}
	other := auth.Principal{Subject: "other", Role: auth.Field, Region: "500105002"}
	planner := auth.Principal{Subject: "pl", Role: auth.Planner, Region: auth.CityCode}
	photo := pngBytes(t)
	if _, _, err := s.AddEvidence(ctx, other, inc.ID.Name, photo); !errors.Is(err, ErrForbidden) {
		t.Fatalf("another worker's photo: %v", err)
	}
	if _, _, err := s.AddEvidence(ctx, planner, inc.ID.Name, photo); !errors.Is(err, ErrForbidden) {
		t.Fatalf("planner's photo: %v", err)
	}
	for _, bad := range [][]byte{nil, []byte("<svg onload=alert(1)>"), []byte("%PDF-1.4"), make([]byte, MaxEvidenceBytes+1)} {
		if _, _, err := s.AddEvidence(ctx, mate, inc.ID.Name, bad); !errors.Is(err, ErrEvidenceType) && !errors.Is(err, ErrEvidenceSize) {
			t.Fatalf("not a photo (%d bytes) accepted: %v", len(bad), err)
		}
	}
	f, ref, err := s.AddEvidence(ctx, mate, inc.ID.Name, photo)
	if err != nil || ref["type"] != "image/png" {
		t.Fatalf("photo: %v %v", err, ref)
	}
	if l := asList(f.Props.Get("evidence")); len(l) != 1 {
		t.Fatalf("evidence props %v", f.Props.Get("evidence"))
	}
	if _, _, err := s.AddEvidence(ctx, mate, inc.ID.Name, photo); err != nil { // the same photo again: no second entry
		t.Fatal(err)
	}
	cur, _ := tw.Get(inc.ID)
	if l := asList(cur.Props.Get("evidence")); len(l) != 1 {
		t.Fatalf("same photo twice: %v", cur.Props.Get("evidence"))
	}
	id, _ := ref["id"].(string)
	b, ct, err := s.Evidence(ctx, op, inc.ID.Name, id)
	if err != nil || ct != "image/png" || !bytes.Equal(b, photo) {
		t.Fatalf("read back: %v %q %d bytes", err, ct, len(b))
	}
	if _, _, err := s.Evidence(ctx, auth.Principal{Role: auth.Operator, Region: "500103"}, inc.ID.Name, id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("out of scope read: %v", err)
	}
	if _, _, err := s.Evidence(ctx, op, inc.ID.Name, "0123456789abcdef0123456789abcdef.png"); !errors.Is(err, ErrNoEvidence) {
		t.Fatalf("unlisted id: %v", err)
	}
	if _, err := DirEvidence(t.TempDir()).Get(ctx, "../../etc/passwd"); !errors.Is(err, ErrNoEvidence) {
		t.Fatalf("path outside the store: %v", err)
	}
}

// FuzzEvidence: any body is either refused or accepted as one of the three
// image types with an id the store accepts; nothing panics.
func FuzzEvidence(f *testing.F) {
	f.Add([]byte("\x89PNG\r\n\x1a\n"))
	f.Add([]byte("\xff\xd8\xff\xe0"))
	f.Add([]byte("RIFF\x00\x00\x00\x00WEBPVP8 "))
	f.Add([]byte("<html>"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ct, id, err := CheckEvidence(b)
		if err != nil {
			return
		}
		if _, ok := evidenceTypes[ct]; !ok || !evidenceID.MatchString(id) {
			t.Fatalf("accepted %q as %q id %q", b, ct, id)
		}
	})
}

// mapBlobs is an in-memory Blobs (spine.Blobs in the server).
type mapBlobs map[string][]byte

func (m mapBlobs) Put(_ context.Context, name string, b []byte) error { m[name] = b; return nil }
func (m mapBlobs) Get(_ context.Context, name string) ([]byte, error) {
	if b, ok := m[name]; ok {
		return b, nil
	}
	return nil, fs.ErrNotExist
}

// TestBlobEvidence: photos go to the shared blobs by id; a missing one or
// a malformed id is ErrNoEvidence (404), never a path into the store.
func TestBlobEvidence(t *testing.T) {
	ctx := context.Background()
	ev := BlobEvidence{Blobs: mapBlobs{}}
	_, id, err := CheckEvidence(pngBytes(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := ev.Put(ctx, id, pngBytes(t)); err != nil {
		t.Fatal(err)
	}
	if b, err := ev.Get(ctx, id); err != nil || !bytes.Equal(b, pngBytes(t)) {
		t.Fatalf("get: %d bytes, %v", len(b), err)
	}
	for _, bad := range []string{"00000000000000000000000000000000.png", "../x.png", ""} {
		if _, err := ev.Get(ctx, bad); !errors.Is(err, ErrNoEvidence) {
			t.Errorf("get %q: %v, want ErrNoEvidence", bad, err)
		}
	}
}
