// Package httpx holds the HTTP plumbing the neuron agent, the gateway and
// their daemons share: the limits of a server reached over the network, and
// the route lookup that tells an unknown route (404) from a wrong method
// (405), so that each handler can answer with its own error envelope.
package httpx

import (
	"log"
	"net/http"
	"time"
)

// Limits of NewServer's listeners.
const (
	// ReadHeaderTimeout cuts a client that is slow to send its headers.
	ReadHeaderTimeout = 10 * time.Second
	// IdleTimeout closes a keep-alive connection idle for this long.
	IdleTimeout = 2 * time.Minute
	// MaxHeaderBytes bounds the request line and headers (431 beyond).
	MaxHeaderBytes = 64 << 10
)

// NewServer returns an http.Server for h with the header timeout, idle
// timeout and header size limit of a server reached over the network
// (handlers bound request bodies themselves). It has no read or write
// timeout: a stream lasts as long as generation does, and either timeout
// would cut it.
func NewServer(h http.Handler, errLog *log.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: ReadHeaderTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          errLog,
	}
}

// Lookup finds the handler of r in mux. When mux has no route for r, h is
// nil and status is http.StatusNotFound, or http.StatusMethodNotAllowed
// with allow holding the methods the path accepts. The handler returned
// does not see path wildcards (r.PathValue); a caller whose routes use
// them serves through mux.ServeHTTP once Lookup found a route.
func Lookup(mux *http.ServeMux, r *http.Request) (h http.Handler, status int, allow string) {
	h, pattern := mux.Handler(r)
	if pattern != "" {
		return h, 0, ""
	}
	// Let the mux decide between 404 and 405 without writing its plain text.
	rec := &statusRecorder{header: make(http.Header)}
	h.ServeHTTP(rec, r)
	if rec.status == http.StatusMethodNotAllowed {
		return nil, http.StatusMethodNotAllowed, rec.header.Get("Allow")
	}
	return nil, http.StatusNotFound, ""
}

// statusRecorder captures the status and headers of the mux's fallback
// handlers; it discards their body.
type statusRecorder struct {
	header http.Header
	status int
}

func (s *statusRecorder) Header() http.Header { return s.header }

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	s.WriteHeader(http.StatusOK)
	return len(b), nil
}
