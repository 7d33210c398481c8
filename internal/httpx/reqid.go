package httpx

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
)

// HeaderRequestID is the header that carries a request's id, from the
// client through the gateway and the neuron to the engine, and back in
// every answer.
const HeaderRequestID = "X-Request-Id"

// MaxRequestID bounds a request id: a client's longer X-Request-Id is
// cut to this many bytes, so that a caller cannot make log lines and
// meter records as long as its headers.
const MaxRequestID = 128

// RequestID gives r its request id and returns it: the client's
// X-Request-Id when it is printable ASCII without spaces (cut to
// MaxRequestID bytes), else a new random one ("req_" and 32 hex digits).
// It sets the id in r's header, which replaces what the client sent, so
// that handlers and what forwards r see the one id, and in w's header, so
// that the answer carries it.
func RequestID(w http.ResponseWriter, r *http.Request) string {
	id, ok := clientRequestID(r.Header[HeaderRequestID])
	if !ok {
		id = NewRequestID()
	}
	r.Header[HeaderRequestID] = []string{id}
	w.Header()[HeaderRequestID] = []string{id}
	return id
}

// clientRequestID returns the client's id, when it sent exactly one that
// is valid, cut to MaxRequestID bytes.
func clientRequestID(vv []string) (string, bool) {
	if len(vv) != 1 || vv[0] == "" {
		return "", false
	}
	id := vv[0]
	if len(id) > MaxRequestID {
		id = id[:MaxRequestID]
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			return "", false
		}
	}
	return id, true
}

// NewRequestID returns a new random request id: "req_" and 32 hex digits.
func NewRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return "req_" + hex.EncodeToString(b[:])
}

// StatusWriter is an http.ResponseWriter that records the status of the
// answer written through it, for an access log. http.ResponseController
// reaches the writer it wraps through Unwrap.
type StatusWriter struct {
	http.ResponseWriter
	// Status is the status written; 0 while none was (an answer that
	// wrote nothing is a 200).
	Status int
}

// WriteHeader records the first final status and passes it on.
func (s *StatusWriter) WriteHeader(code int) {
	if s.Status == 0 && code >= 200 {
		s.Status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

// Write records a 200 when no status was written, and passes b on.
func (s *StatusWriter) Write(b []byte) (int, error) {
	if s.Status == 0 {
		s.Status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Flush flushes the wrapped writer, for callers that assert
// http.Flusher.
func (s *StatusWriter) Flush() {
	if s.Status == 0 {
		s.Status = http.StatusOK
	}
	_ = http.NewResponseController(s.ResponseWriter).Flush()
}

// Unwrap returns the wrapped writer, for http.ResponseController.
func (s *StatusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Code returns the status of the answer: Status, or 200 when nothing was
// written (net/http sends a 200).
func (s *StatusWriter) Code() int {
	if s.Status == 0 {
		return http.StatusOK
	}
	return s.Status
}
