package acceptance

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestConnectionLimits: thousands of idle keep-alive and silent
// connections (no token needed) neither exhaust the server's file
// descriptors nor stop /healthz, /readyz or the API from answering; a
// request body or header that stops half way is cut after its timeout
// instead of holding a connection forever (issue 11 item 5).
func TestConnectionLimits(t *testing.T) {
	const maxConns = 200
	s := startServer(t, serveOpts{args: []string{
		"--http-max-conns", fmt.Sprint(maxConns), "--http-reserve-conns", "8",
		"--http-body-timeout", "1s", "--http-read-header-timeout", "2s"}})
	tok := s.token(t, "operator", "500000")

	// Ten times the cap, within a quarter of this process's file limit.
	n := 10 * maxConns
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && uint64(n) > lim.Cur/4 {
		n = int(lim.Cur / 4)
	}
	addr := strings.TrimPrefix(s.url, "http://")
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		conns = append(conns, c)
		if i%2 == 1 {
			continue // silent: connected, never sends a byte
		}
		// Keep-alive: one request, then idle. The server may already have
		// closed it for a newer one, which is what the cap is for.
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		s.must(t, http.StatusOK, http.MethodGet, path, "", nil)
	}
	s.must(t, http.StatusOK, http.MethodGet, "/ogc/collections", tok, nil)
	open := s.metrics(t, "twin_http_connections")
	if got := open[`{slot="regular"}`]; got > maxConns {
		t.Errorf("%v regular connections open with --http-max-conns %d", got, maxConns)
	}
	if ev := s.metrics(t, "twin_http_connections_evicted_total")[""]; ev == 0 {
		t.Errorf("no idle connection was evicted after %d connections", n)
	}
	t.Logf("%d connections opened; server holds %v, evicted %v", n, open, s.metrics(t, "twin_http_connections_evicted_total")[""])

	// A body that stops half way, from a client with a valid token.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	line := fmt.Sprintf(`{"id":"acc-slowloris","ts":%q,"lon":106.55,"lat":29.56}`+"\n", time.Now().Format(time.RFC3339Nano))
	fmt.Fprintf(c, "POST /api/telemetry HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: 100000\r\n\r\n%s", tok, line)
	got := serverCloses(t, c, "unfinished body")
	t.Logf("unfinished body answered %q", firstLine(got))

	// Headers that never end, sent a byte at a time.
	c2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	fmt.Fprintf(c2, "GET /healthz HTTP/1.1\r\nHost: x\r\n")
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
				if _, err := c2.Write([]byte("X")); err != nil {
					return
				}
			}
		}
	}()
	serverCloses(t, c2, "unfinished headers")
	s.must(t, http.StatusOK, http.MethodGet, "/healthz", "", nil)
}

// serverCloses reads c until the server closes it and returns what it
// sent; it fails the test if the server still holds the connection after a
// minute (far beyond any timeout the test set).
func serverCloses(t *testing.T, c net.Conn, what string) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(time.Minute))
	b, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("%s: the server still holds the connection (read %q)", what, b)
	}
	return string(b)
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\r\n")
	return l
}

// TestWebsocketBounds: websockets per token subject are capped (429, with a
// metric), and a client flooding subscribes is closed with 1008 after a
// burst instead of costing a snapshot per frame, while the others keep
// their link (issue 11 items 4 and 6).
func TestWebsocketBounds(t *testing.T) {
	s := startServer(t, serveOpts{args: []string{"--ws-max-per-principal", "2"}})
	tok := s.token(t, "operator", "500000")
	flood := dialWS(t, s, tok)
	calm := dialWS(t, s, tok)
	u := "ws" + strings.TrimPrefix(s.url, "http") + "/ws?access_token=" + url.QueryEscape(tok)
	if c, resp, err := websocket.DefaultDialer.Dial(u, nil); err == nil {
		c.Close()
		t.Fatal("a third websocket for the same subject was accepted with --ws-max-per-principal 2")
	} else if resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("third websocket: %v %v, want 429", err, resp)
	}
	if r := s.metrics(t, "twin_ws_rejected_total")[`{reason="principal"}`]; r != 1 {
		t.Errorf(`twin_ws_rejected_total{reason="principal"} = %v, want 1`, r)
	}

	sub := []byte(`{"op":"subscribe","layers":["vehicles","buildings","alerts"],"bbox":[-180,-90,180,90]}`)
	for i := 0; i < 5000; i++ {
		if err := flood.c.WriteMessage(websocket.TextMessage, sub); err != nil {
			break // closed under us
		}
	}
	_ = flood.c.SetReadDeadline(time.Now().Add(time.Minute))
	var code int
	for {
		if _, _, err := flood.c.ReadMessage(); err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				code = ce.Code
			}
			break
		}
	}
	if code != websocket.ClosePolicyViolation {
		t.Errorf("subscribe flood: close code %d, want %d", code, websocket.ClosePolicyViolation)
	}
	calm.send(t, map[string]any{"op": "subscribe", "layers": []string{"vehicles"}, "bbox": []float64{106.5, 29.5, 106.6, 29.6}})
	calm.next(t, "snapshot", func(m wsMsg) bool { return m.Op == "snapshot" })
	// The flooder's slot is free again.
	eventually(t, 20*time.Second, "a websocket slot freed", func() bool {
		c, _, err := websocket.DefaultDialer.Dial(u, nil)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
	s.must(t, http.StatusOK, http.MethodGet, "/healthz", "", nil)
}
