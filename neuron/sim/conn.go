package sim

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The connection behaviour of llama.cpp's llama-server (its HTTP library,
// cpp-httplib), measured against the build in ../shared/realengine: it
// announces "Keep-Alive: timeout=5, max=100" on every answer, closes the
// connection (a FIN) right after the last chunk of a streamed answer all
// the same, answers the 100th request of a connection with "Connection:
// close", and closes a connection idle for 5 s.
const (
	// LlamaServerIdleTimeout is how long llama-server keeps an idle
	// connection open, and the default IdleTimeout under
	// Config.LlamaServerConnections.
	LlamaServerIdleTimeout = 5 * time.Second
	// llamaMaxRequests is the requests llama-server serves on one
	// connection.
	llamaMaxRequests = 100
	// defaultIdleTimeout is the IdleTimeout of NewServer otherwise.
	defaultIdleTimeout = 2 * time.Minute
)

// NewServer returns an *http.Server that serves h with the connection
// behaviour of cfg: its IdleTimeout and, with LlamaServerConnections,
// llama-server's way with keep-alive. The caller may set its other fields
// (ErrorLog, timeouts) before serving.
func NewServer(cfg Config, h http.Handler) *http.Server {
	idle := cfg.IdleTimeout
	switch {
	case idle > 0:
	case cfg.LlamaServerConnections:
		idle = LlamaServerIdleTimeout
	default:
		idle = defaultIdleTimeout
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: idle, MaxHeaderBytes: 64 << 10}
	if cfg.LlamaServerConnections {
		lc := &llamaConns{next: h, keepAlive: fmt.Sprintf("timeout=%d, max=%d", int((idle+time.Second-1)/time.Second), llamaMaxRequests)}
		srv.Handler = lc
		srv.ConnContext = lc.connContext
		srv.ConnState = lc.connState
	}
	return srv
}

// llamaConns gives a server llama-server's way with keep-alive.
type llamaConns struct {
	next      http.Handler
	keepAlive string   // the Keep-Alive header of every answer
	conns     sync.Map // net.Conn → *llamaConn, while open
}

// llamaConn is the state of one connection.
type llamaConn struct {
	served     atomic.Int32 // requests read on it
	closeAfter atomic.Bool  // close it once the answer is written
}

// llamaConnKey is the request context key of a request's *llamaConn.
type llamaConnKey struct{}

func (l *llamaConns) connContext(ctx context.Context, c net.Conn) context.Context {
	lc := &llamaConn{}
	l.conns.Store(c, lc)
	return context.WithValue(ctx, llamaConnKey{}, lc)
}

// connState closes a connection as it goes idle after a streamed answer:
// by then the server has written the answer's last chunk, and it has not
// yet read the next request.
func (l *llamaConns) connState(c net.Conn, s http.ConnState) {
	switch s {
	case http.StateIdle:
		if v, ok := l.conns.Load(c); ok && v.(*llamaConn).closeAfter.Load() {
			_ = c.Close()
		}
	case http.StateHijacked, http.StateClosed:
		l.conns.Delete(c)
	}
}

func (l *llamaConns) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	lc, _ := r.Context().Value(llamaConnKey{}).(*llamaConn)
	if lc == nil { // not from this server's connections
		l.next.ServeHTTP(w, r)
		return
	}
	if lc.served.Add(1) >= llamaMaxRequests {
		w.Header().Set("Connection", "close")
	} else {
		w.Header().Set("Keep-Alive", l.keepAlive)
	}
	l.next.ServeHTTP(w, r)
	if strings.HasPrefix(w.Header().Get("Content-Type"), "text/event-stream") {
		lc.closeAfter.Store(true)
	}
}
