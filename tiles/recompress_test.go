package tiles

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/paulmach/orb/maptile"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/citytwin/citytwin/twin"
)

// TestRecompressServedAgain: a cached tile served again gets a thorough
// gzip body in the background: smaller, the same tile inflated, an ETag
// of its own, and a 304 both for it and for the fast body's ETag a client
// may hold (with that ETag, so the client freshens what it holds). A tile
// asked for once keeps its fast body.
func TestRecompressServedAgain(t *testing.T) {
	tw := demoCityTwin(t)
	s := New(tw, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	h := s.Handler()
	gz := map[string]string{"Accept-Encoding": "gzip"}
	u := tileURL(benchLayers, maptile.At(benchCentre, 15)) + "?attrs=" + benchPgAttrs
	first := get(t, h, u, gz)
	fastTag := first.Header().Get("ETag")
	if !strings.HasSuffix(fastTag, fastSuffix) {
		t.Fatalf("cold tile ETag %s, want the fast body's", fastTag)
	}
	once := get(t, h, tileURL(benchLayers, maptile.At(benchCentre, 14)), gz)
	var again *httptest.ResponseRecorder
	for deadline := time.Now().Add(time.Minute); ; {
		again = get(t, h, u, gz)
		if strings.HasSuffix(again.Header().Get("ETag"), betterSuffix) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still the fast body after a minute of hits: ETag %s", again.Header().Get("ETag"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if a, f := again.Body.Len(), first.Body.Len(); a >= f {
		t.Errorf("thorough body %d bytes, fast %d", a, f)
	}
	if cl := again.Header().Get("Content-Length"); cl != strconv.Itoa(again.Body.Len()) {
		t.Errorf("Content-Length %s for %d bytes", cl, again.Body.Len())
	}
	raw := gunzip(t, first.Body.Bytes())
	if !bytes.Equal(gunzip(t, again.Body.Bytes()), raw) {
		t.Error("the thorough body inflates to another tile")
	}
	plain := get(t, h, u, nil)
	if !bytes.Equal(plain.Body.Bytes(), raw) || plain.Header().Get("Content-Encoding") != "" {
		t.Error("a plain request after recompression got another tile")
	}
	for _, tag := range []string{fastTag, again.Header().Get("ETag")} {
		r := get(t, h, u, map[string]string{"Accept-Encoding": "gzip", "If-None-Match": tag})
		if r.Code != http.StatusNotModified || r.Header().Get("ETag") != tag {
			t.Errorf("If-None-Match %s: %d with ETag %s, want 304 with it", tag, r.Code, r.Header().Get("ETag"))
		}
	}
	if n := testutil.ToFloat64(s.metrics.recompressed); n != 1 {
		t.Errorf("%v tiles recompressed, want 1", n)
	}
	if tag := get(t, h, tileURL(benchLayers, maptile.At(benchCentre, 14)), gz).Header().Get("ETag"); tag != once.Header().Get("ETag") {
		t.Errorf("a tile's second request got ETag %s, want the fast body's %s", tag, once.Header().Get("ETag"))
	}
}

// TestReplaceKeepsDroppedOut: a thorough body made for an entry that a
// change dropped from the cache meanwhile is not cached.
func TestReplaceKeepsDroppedOut(t *testing.T) {
	c := newCache(1 << 20)
	key := cacheKey{Layers: "buildings", Tile: tileKey{Z: 15, X: 1, Y: 2}}
	e := newEntry(key, []twin.Layer{twin.Buildings}, []byte("a tile, a tile, a tile"), true)
	c.put(e, 0)
	better := e.withBetter([]byte("smaller"))
	c.mu.Lock()
	c.dropTile(key.Tile, twin.Buildings)
	c.mu.Unlock()
	if c.replace(e, better) {
		t.Error("replaced an entry no longer cached")
	}
	if n, _ := c.stats(); n != 0 {
		t.Errorf("%d entries cached, want 0", n)
	}
	c.put(e, 0)
	if !c.replace(e, better) {
		t.Fatal("did not replace a cached entry")
	}
	if got, _ := c.get(key); got != better {
		t.Error("the cache does not hold the thorough entry")
	}
	if _, size := c.stats(); size != better.cost() {
		t.Errorf("cache size %d, want %d", size, better.cost())
	}
}
