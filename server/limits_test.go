package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// startBounded serves h (under the health routes of a Server) with lim on
// a free loopback port and returns its address.
func startBounded(t *testing.T, lim Limits, routes ...Route) (*HTTP, string) {
	t.Helper()
	srv := New(Options{Routes: routes, Gatherer: prometheus.NewRegistry()})
	s := NewHTTP(srv, HTTPOptions{Limits: lim, Registerer: prometheus.NewRegistry()})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return s, ln.Addr().String()
}

// rawGet sends a keep-alive GET on c and reads its response.
func rawGet(t *testing.T, c net.Conn, br *bufio.Reader, path string) *http.Response {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path); err != nil {
		t.Fatalf("send: %v", err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// healthOnce asks /healthz on a fresh connection.
func healthOnce(addr string) (int, error) {
	cl := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := cl.Get("http://" + addr + "/healthz")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// waitClosed reads c until the server closes it; it fails the test if the
// generous deadline passes first (the server kept the connection).
func waitClosed(t *testing.T, c net.Conn, what string) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	b, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("%s: the server kept the connection open (read %q)", what, b)
	}
	return string(b)
}

func TestIdleConnectionsCannotStarveHealth(t *testing.T) {
	const max = 20
	s, addr := startBounded(t, Limits{MaxConns: max, Reserve: 2})
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	// Five times the cap: keep-alive connections left idle after one
	// request, and connections that never send anything.
	for i := range 5 * max {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		if i%2 == 0 {
			if resp := rawGet(t, c, bufio.NewReader(c), "/healthz"); resp.StatusCode != http.StatusOK {
				t.Fatalf("GET /healthz on connection %d: %d", i, resp.StatusCode)
			}
		}
	}
	for range 3 {
		code, err := healthOnce(addr)
		if err != nil || code != http.StatusOK {
			t.Fatalf("/healthz with %d idle connections: %d %v", len(conns), code, err)
		}
	}
	if open := testutil.ToFloat64(s.conns.m.open.WithLabelValues("regular")); open > max {
		t.Errorf("%v regular connections open, cap %d", open, max)
	}
	if ev := testutil.ToFloat64(s.conns.m.evicted); ev < float64(4*max) {
		t.Errorf("%v idle connections evicted, want at least %d", ev, 4*max)
	}
}

func TestBusyConnectionsLeaveReserveForHealth(t *testing.T) {
	const max, reserve = 4, 2
	release := make(chan struct{})
	var started sync.WaitGroup
	block := Route{Pattern: "GET /block", Access: Public, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started.Done()
		<-release
	})}
	s, addr := startBounded(t, Limits{MaxConns: max, Reserve: reserve}, block)
	defer close(release)
	// Every regular slot holds an active request.
	started.Add(max)
	for range max {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET /block HTTP/1.1\r\nHost: x\r\n\r\n")
	}
	started.Wait()
	// Health answers from the reserve; anything else is refused there.
	if code, err := healthOnce(addr); err != nil || code != http.StatusOK {
		t.Fatalf("/healthz with every slot busy: %d %v", code, err)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if resp := rawGet(t, c, bufio.NewReader(c), "/block"); resp.StatusCode != http.StatusServiceUnavailable || !resp.Close {
		t.Fatalf("GET /block from the reserve: %d (close %v), want 503 and close", resp.StatusCode, resp.Close)
	}
	// Silent connections fill the reserve; the next ones are closed at once.
	var silent []net.Conn
	for range reserve + 3 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		silent = append(silent, c)
	}
	closed := 0
	for _, c := range silent {
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := c.Read(make([]byte, 1)); err != nil && !isTimeout(err) {
			closed++
		}
	}
	if closed < 3 {
		t.Errorf("%d of %d connections beyond cap and reserve were closed, want 3", closed, len(silent))
	}
	if r := testutil.ToFloat64(s.conns.m.rejected); r < 3 {
		t.Errorf("rejected = %v, want >= 3", r)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestUnfinishedBodyAndHeadersAreCut(t *testing.T) {
	bodyErr := make(chan error, 1)
	post := Route{Pattern: "POST /upload", Access: Public, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		bodyErr <- err
		if err != nil {
			WriteError(w, http.StatusBadRequest, "read body", err.Error())
		}
	})}
	_, addr := startBounded(t, Limits{BodyTimeout: 300 * time.Millisecond, ReadHeaderTimeout: 300 * time.Millisecond}, post)

	// A body that stops half way.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789")
	waitClosed(t, c, "unfinished body")
	if err := <-bodyErr; err == nil {
		t.Error("the handler read the unfinished body without an error")
	}

	// Headers that never end.
	c2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	fmt.Fprintf(c2, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
	waitClosed(t, c2, "unfinished headers")
}

func TestTimeoutsDoNotCutLongRequestsOrWebsockets(t *testing.T) {
	const short = 200 * time.Millisecond
	ctxErr := make(chan error, 1)
	slow := Route{Pattern: "POST /slow", Access: Public, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			WriteError(w, http.StatusBadRequest, "read body", err.Error())
			return
		}
		time.Sleep(3 * short) // longer than the body timeout, shorter than the write timeout
		ctxErr <- r.Context().Err()
		WriteJSON(w, http.StatusOK, map[string]string{"status": "done"})
	})}
	up := websocket.Upgrader{}
	ws := Route{Pattern: "GET /ws", Access: Public, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			typ, b, err := c.ReadMessage()
			if err != nil {
				return
			}
			if err := c.WriteMessage(typ, b); err != nil {
				return
			}
		}
	})}
	_, addr := startBounded(t, Limits{BodyTimeout: short, WriteTimeout: 5 * short, ReadHeaderTimeout: short, IdleTimeout: short}, slow, ws)

	resp, err := http.Post("http://"+addr+"/slow", "application/json", strings.NewReader(`{"a":1}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("slow POST: %d", resp.StatusCode)
	}
	if err := <-ctxErr; err != nil {
		t.Errorf("request context ended after the body was read: %v", err)
	}

	wc, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer wc.Close()
	for i := range 3 {
		time.Sleep(3 * short) // past every HTTP timeout (ours, not the hub's)
		msg := fmt.Sprintf("ping %d", i)
		if err := wc.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			t.Fatalf("websocket write %d: %v", i, err)
		}
		_ = wc.SetReadDeadline(time.Now().Add(20 * time.Second))
		if _, b, err := wc.ReadMessage(); err != nil || string(b) != msg {
			t.Fatalf("websocket echo %d: %q %v", i, b, err)
		}
	}
}
