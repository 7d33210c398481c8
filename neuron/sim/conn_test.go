package sim_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/neuron/sim"
)

// llamaConn is one raw client connection to a server of NewServer.
type llamaConn struct {
	c  net.Conn
	br *bufio.Reader
}

// serveLlama serves an engine with llama-server's connections and an idle
// timeout, and returns its address.
func serveLlama(t *testing.T, idle time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := sim.Config{LlamaServerConnections: true, IdleTimeout: idle}
	srv := sim.NewServer(cfg, sim.NewEngine(cfg, sim.WithModelID("m")))
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

func dialLlama(t *testing.T, addr string) *llamaConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	// A guard against a hang, not a timed assertion.
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	return &llamaConn{c: c, br: bufio.NewReader(c)}
}

// chat sends a chat request and reads its whole answer.
func (l *llamaConn) chat(t *testing.T, stream bool) *http.Response {
	t.Helper()
	body := chatBody("hello", fmt.Sprintf(`"max_tokens":3,"stream":%t`, stream))
	req, _ := http.NewRequest(http.MethodPost, "http://m/v1/chat/completions", strings.NewReader(body))
	if err := req.Write(l.c); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(l.br, req)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	if _, err := io.ReadAll(resp.Body); err != nil {
		t.Fatalf("reading the body: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	return resp
}

// closed reports whether the server closed the connection: the next read
// ends at once (EOF, or a reset).
func (l *llamaConn) closed() bool {
	_, err := l.br.ReadByte()
	return err != nil
}

// TestLlamaServerConnections: like llama-server, every answer announces
// keep-alive; a non-streamed answer keeps the connection, a streamed one
// closes it right after its last chunk, and the 100th request of a
// connection is answered with Connection: close.
func TestLlamaServerConnections(t *testing.T) {
	addr := serveLlama(t, time.Minute)
	l := dialLlama(t, addr)
	for range 3 {
		resp := l.chat(t, false)
		if got := resp.Header.Get("Keep-Alive"); got != "timeout=60, max=100" {
			t.Errorf("Keep-Alive %q, want timeout=60, max=100", got)
		}
		if resp.Close {
			t.Fatal("a non-streamed answer closed the connection")
		}
	}
	resp := l.chat(t, true)
	if got := resp.Header.Get("Keep-Alive"); got != "timeout=60, max=100" || resp.Close {
		t.Errorf("a streamed answer announces Keep-Alive %q, close %v; want keep-alive announced", got, resp.Close)
	}
	if !l.closed() {
		t.Error("the connection stayed open after a streamed answer")
	}

	l = dialLlama(t, addr)
	for i := 1; i < 100; i++ {
		if resp := l.chat(t, false); resp.Close {
			t.Fatalf("request %d closed the connection", i)
		}
	}
	if resp := l.chat(t, false); !resp.Close || resp.Header.Get("Keep-Alive") != "" {
		t.Errorf("the 100th answer: close %v, Keep-Alive %q; want Connection: close", resp.Close, resp.Header.Get("Keep-Alive"))
	}
	if !l.closed() {
		t.Error("the connection stayed open after the 100th answer")
	}
}

// TestLlamaServerIdleTimeout: an idle connection is closed after
// IdleTimeout, which the answers announce in whole seconds.
func TestLlamaServerIdleTimeout(t *testing.T) {
	l := dialLlama(t, serveLlama(t, 10*time.Millisecond))
	if got := l.chat(t, false).Header.Get("Keep-Alive"); got != "timeout=1, max=100" {
		t.Errorf("Keep-Alive %q, want timeout=1, max=100", got)
	}
	if !l.closed() { // blocks until the server's idle timeout
		t.Error("the idle connection was not closed")
	}
}

// TestNewServerDefaults: without LlamaServerConnections the server keeps
// connections 2 minutes and announces nothing; with it, 5 s as
// llama-server.
func TestNewServerDefaults(t *testing.T) {
	if got := sim.NewServer(sim.Config{}, http.NotFoundHandler()).IdleTimeout; got != 2*time.Minute {
		t.Errorf("IdleTimeout %v, want 2m", got)
	}
	if got := sim.NewServer(sim.Config{LlamaServerConnections: true}, http.NotFoundHandler()).IdleTimeout; got != sim.LlamaServerIdleTimeout {
		t.Errorf("IdleTimeout %v, want %v", got, sim.LlamaServerIdleTimeout)
	}
	if err := (sim.Config{IdleTimeout: -time.Second}).Validate(); err == nil {
		t.Error("a negative IdleTimeout is valid")
	}
}
