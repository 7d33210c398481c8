package httpx_test

import (
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/internal/httpx"
)

// TestNewServer_Limits checks the limits of the listeners the binaries use:
// a header timeout, an idle timeout and a header size limit, and no read
// or write timeout (they would cut streams).
func TestNewServer_Limits(t *testing.T) {
	t.Parallel()
	s := httpx.NewServer(http.NotFoundHandler(), log.New(io.Discard, "", 0))
	if s.ReadHeaderTimeout <= 0 || s.IdleTimeout <= 0 || s.MaxHeaderBytes <= 0 {
		t.Errorf("ReadHeaderTimeout %v, IdleTimeout %v, MaxHeaderBytes %d: want all set", s.ReadHeaderTimeout, s.IdleTimeout, s.MaxHeaderBytes)
	}
	if s.ReadTimeout != 0 || s.WriteTimeout != 0 {
		t.Errorf("ReadTimeout %v, WriteTimeout %v: want none", s.ReadTimeout, s.WriteTimeout)
	}
}

// TestNewServer_RefusesOversizedHeaders sends headers over the limit:
// 431, and the handler never runs.
func TestNewServer_RefusesOversizedHeaders(t *testing.T) {
	t.Parallel()
	called := make(chan struct{}, 1)
	addr := serve(t, httpx.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { called <- struct{}{} }), log.New(io.Discard, "", 0)))
	req, err := http.NewRequestWithContext(t.Context(), "GET", "http://"+addr+"/health", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Big", strings.Repeat("a", 2*httpx.MaxHeaderBytes))
	c := &http.Client{Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("status %d, want 431", resp.StatusCode)
	}
	select {
	case <-called:
		t.Error("the handler ran")
	default:
	}
}

// TestNewServer_CutsSlowHeaders opens a connection that sends part of its
// headers and then nothing: the server closes it after ReadHeaderTimeout,
// without running the handler. The test shortens the timeout of the
// server NewServer built, to stay fast.
func TestNewServer_CutsSlowHeaders(t *testing.T) {
	t.Parallel()
	called := make(chan struct{}, 1)
	s := httpx.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { called <- struct{}{} }), log.New(io.Discard, "", 0))
	s.ReadHeaderTimeout = 100 * time.Millisecond
	addr := serve(t, s)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: "); err != nil {
		t.Fatal(err)
	}
	// Far longer than the timeout: a server that waits for the rest of
	// the headers fails the test here.
	if err := conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	answer, err := io.ReadAll(conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the server kept waiting for the headers")
	}
	if strings.HasPrefix(string(answer), "HTTP/1.1 2") {
		t.Errorf("the server served a request whose headers never ended: %q", answer)
	}
	select {
	case <-called:
		t.Error("the handler ran")
	default:
	}
}

// serve serves s on a loopback port until the test ends and returns the
// address.
func serve(t *testing.T, s *http.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = s.Close()
		<-done
	})
	return ln.Addr().String()
}

func TestLookup(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /models/{id}", func(http.ResponseWriter, *http.Request) {})
	mux.HandleFunc("POST /load", func(http.ResponseWriter, *http.Request) {})
	tests := []struct {
		name       string
		method     string
		path       string
		wantStatus int
		wantAllow  string
	}{
		{name: "matched", method: "GET", path: "/models/x", wantStatus: 0},
		{name: "unknown route", method: "GET", path: "/nope", wantStatus: http.StatusNotFound},
		{name: "wrong method", method: "GET", path: "/load", wantStatus: http.StatusMethodNotAllowed, wantAllow: "POST"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, err := http.NewRequest(tt.method, "http://x"+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			h, status, allow := httpx.Lookup(mux, r)
			if status != tt.wantStatus || allow != tt.wantAllow || (h != nil) != (tt.wantStatus == 0) {
				t.Errorf("Lookup(%s %s) = handler %v, %d, %q; want %d, %q", tt.method, tt.path, h != nil, status, allow, tt.wantStatus, tt.wantAllow)
			}
		})
	}
}
