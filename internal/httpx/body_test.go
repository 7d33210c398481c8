package httpx_test

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/internal/httpx"
	"github.com/helexa-ai/helexa-go/internal/httpx/httpxtest"
)

// bodyServer serves a handler that reads the body with httpx.ReadBody
// (limit 16 bytes, the given timeout) and answers the status its error
// maps to and what it read, then a second line written after flushing the
// first, so a reply that arrives whole also proves the connection was
// still writable after the read.
func bodyServer(t *testing.T, timeout time.Duration) string {
	t.Helper()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := httpx.ReadBody(w, r, 16, timeout)
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			w.WriteHeader(http.StatusRequestEntityTooLarge)
		case errors.Is(err, httpx.ErrBodyTimeout):
			w.WriteHeader(http.StatusRequestTimeout)
		case err != nil:
			w.WriteHeader(http.StatusBadRequest)
		default:
			fmt.Fprintf(w, "%s\n", body)
			http.NewResponseController(w).Flush()
			fmt.Fprintln(w, "more")
		}
	})
	return serve(t, httpx.NewServer(h, log.New(io.Discard, "", 0)))
}

// exchange sends raw over a new connection and returns the status code of
// the answer and its body.
func exchange(t *testing.T, addr, raw string) (int, string) {
	t.Helper()
	resp, body := httpxtest.Exchange(t, addr, raw)
	return resp.StatusCode, string(body)
}

func TestReadBody(t *testing.T) {
	t.Parallel()
	addr := bodyServer(t, 10*time.Second)
	post := func(headers, body string) string {
		return "POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + headers + "\r\n" + body
	}
	tests := []struct {
		name, raw  string
		wantStatus int
		wantBody   string
	}{
		{"whole body", post("Content-Length: 5\r\n", "hello"), http.StatusOK, "hello\nmore\n"},
		{"chunked", post("Transfer-Encoding: chunked\r\n", "5\r\nhello\r\n0\r\n\r\n"), http.StatusOK, "hello\nmore\n"},
		{"empty", post("Content-Length: 0\r\n", ""), http.StatusOK, "\nmore\n"},
		{"Content-Length over the limit", post("Content-Length: 17\r\n", strings.Repeat("x", 17)), http.StatusRequestEntityTooLarge, ""},
		{"chunked over the limit", post("Transfer-Encoding: chunked\r\n", "11\r\n"+strings.Repeat("x", 17)+"\r\n0\r\n\r\n"), http.StatusRequestEntityTooLarge, ""},
		{"bad chunking", post("Transfer-Encoding: chunked\r\n", "zz\r\n"), http.StatusBadRequest, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			status, body := exchange(t, addr, tt.raw)
			if status != tt.wantStatus || body != tt.wantBody {
				t.Errorf("answer %d %q, want %d %q", status, body, tt.wantStatus, tt.wantBody)
			}
		})
	}
}

// TestReadBodyTimeout: a client that sends part of its body and then
// nothing is answered once the timeout passes, instead of holding the
// connection.
func TestReadBodyTimeout(t *testing.T) {
	t.Parallel()
	addr := bodyServer(t, 100*time.Millisecond)
	status, _ := exchange(t, addr, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhel")
	if status != http.StatusRequestTimeout {
		t.Errorf("status %d, want 408", status)
	}
}
