package httpx

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"
)

// BodyReadTimeout is how long a handler waits for a whole request body by
// default: a client that sends its headers and then trickles its body (or
// stops) is cut after it instead of holding the connection and its
// goroutine for as long as it likes.
const BodyReadTimeout = time.Minute

// ErrBodyTimeout is the error of a request body that did not arrive within
// its read timeout; servers answer it with 408.
var ErrBodyTimeout = errors.New("the request body did not arrive in time")

// ReadBody reads r's whole body: at most limit bytes (a larger body, or a
// Content-Length over limit, is an *http.MaxBytesError) within timeout
// (else an error wrapping ErrBodyTimeout; 0 means no deadline). Any other
// read error is returned wrapped. When ReadBody returns the connection has
// no read deadline again, so a long response (a stream) is not cut by it.
func ReadBody(w http.ResponseWriter, r *http.Request, limit int64, timeout time.Duration) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, &http.MaxBytesError{Limit: limit}
	}
	rc := http.NewResponseController(w)
	deadline := timeout > 0 && rc.SetReadDeadline(time.Now().Add(timeout)) == nil
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength))
	}
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, limit))
	if errors.Is(err, os.ErrDeadlineExceeded) {
		// The deadline stays: the rest of the body is not waited for, and
		// the connection closes after the answer (the server would
		// otherwise read what is left of the body before answering).
		w.Header().Set("Connection", "close")
		return nil, fmt.Errorf("%w (%v)", ErrBodyTimeout, timeout)
	}
	if deadline {
		_ = rc.SetReadDeadline(time.Time{})
	}
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, mbe
		}
		return nil, fmt.Errorf("reading the body: %w", err)
	}
	return buf.Bytes(), nil
}
