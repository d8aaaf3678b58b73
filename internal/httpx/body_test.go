package httpx

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestReadBody reads declared, undeclared (chunked) and over-limit bodies
// through a real server, and checks that a declared length is one
// allocation of that size.
func TestReadBody(t *testing.T) {
	type got struct {
		body     []byte
		capacity int
		err      error
	}
	res := make(chan got, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := ReadBody(w, r, 1000)
		res <- got{b, cap(b), err}
	}))
	defer srv.Close()
	post := func(body io.Reader, length int64) got {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, srv.URL, body)
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = length
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return <-res
	}
	want := bytes.Repeat([]byte("0123456789"), 70) // 700 B, past io.ReadAll's first 512
	g := post(bytes.NewReader(want), int64(len(want)))
	if g.err != nil || !bytes.Equal(g.body, want) {
		t.Fatalf("declared: %d bytes, err %v", len(g.body), g.err)
	}
	if g.capacity != len(want)+1 {
		t.Errorf("declared %d bytes: buffer of %d, want one of %d", len(want), g.capacity, len(want)+1)
	}
	// No length (chunked): read all the same.
	g = post(io.MultiReader(bytes.NewReader(want[:300]), bytes.NewReader(want[300:])), -1)
	if g.err != nil || !bytes.Equal(g.body, want) {
		t.Fatalf("chunked: %d bytes, err %v", len(g.body), g.err)
	}
	// Empty.
	g = post(http.NoBody, 0)
	if g.err != nil || len(g.body) != 0 {
		t.Fatalf("empty: %q, err %v", g.body, g.err)
	}
	// Over the limit, declared or not: the MaxBytesReader's error.
	for _, length := range []int64{1001, -1} {
		g = post(strings.NewReader(strings.Repeat("x", 1001)), length)
		var mbe *http.MaxBytesError
		if !errors.As(g.err, &mbe) || mbe.Limit != 1000 {
			t.Errorf("1001 bytes (length %d): err %v, want MaxBytesError of 1000", length, g.err)
		}
	}
}
