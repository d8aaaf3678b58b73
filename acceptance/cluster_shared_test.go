package acceptance

import (
	"bytes"
	"crypto/rand"
	"image"
	"image/png"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/citytwin/citytwin/internal/pgtest"
)

// noisePNG returns a PNG of random pixels: it does not compress, so its
// size is about w*h*4 bytes.
func noisePNG(t testing.TB, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	if _, err := rand.Read(img.Pix); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// twoServers starts two servers of one twin (one PostGIS, a nats-server
// of the test's own, each its own embedded MQTT broker) and returns the
// leader first.
func twoServers(t *testing.T, extra ...string) (a, b *server, nats string) {
	t.Helper()
	nats = startNATS(t)
	db := pgtest.New(t)
	key := writeKey(t)
	args := append([]string{"--nats", nats}, extra...)
	a = startServer(t, serveOpts{db: db, key: key, args: args})
	eventually(t, 30*time.Second, "A leads", func() bool { return a.metrics(t, "twin_changelog_leader")[""] == 1 })
	b = startServer(t, serveOpts{db: db, key: key, args: args})
	if b.metrics(t, "twin_changelog_leader")[""] != 0 {
		t.Fatal("B leads too")
	}
	return a, b, nats
}

// TestEvidenceOnEveryServer (issue 13): with --nats evidence photos are
// in the twin's JetStream Object Store, not on one server's disk: a photo
// uploaded on the leader is served by the follower, and one uploaded on
// the follower (larger than a NATS message: the relay hands the body
// over through its bucket) by the leader, byte for byte.
func TestEvidenceOnEveryServer(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the two-server twin")
	}
	a, b, _ := twoServers(t)
	tok := a.token(t, "operator", "500000")
	var rep incidentAnswer
	b.must(t, http.StatusCreated, http.MethodPost, "/api/incidents", tok,
		map[string]any{"type": "acc-ev-" + suffix(t), "lon": 106.55, "lat": 29.55, "description": "photo please"}).json(t, &rep)
	name := strings.TrimPrefix(rep.Incident.ID, "incidents/")

	type ref struct {
		Evidence struct {
			ID string `json:"id"`
		} `json:"evidence"`
	}
	for _, c := range []struct {
		what     string
		up, down *server
		photo    []byte
	}{
		{"small photo up on the leader, down from the follower", a, b, noisePNG(t, 64, 64)},
		{"1.6 MB photo up on the follower, down from the leader", b, a, noisePNG(t, 640, 640)},
	} {
		var r ref
		c.up.must(t, http.StatusCreated, http.MethodPost, "/api/incidents/"+name+"/evidence", tok, c.photo).json(t, &r)
		if r.Evidence.ID == "" {
			t.Fatalf("%s: no evidence id", c.what)
		}
		got := c.down.must(t, http.StatusOK, http.MethodGet, "/api/incidents/"+name+"/evidence/"+r.Evidence.ID, tok, nil)
		if !bytes.Equal(got.body, c.photo) || got.header.Get("Content-Type") != "image/png" {
			t.Fatalf("%s: got %d bytes (%s), want the %d uploaded", c.what, len(got.body), got.header.Get("Content-Type"), len(c.photo))
		}
	}
}
