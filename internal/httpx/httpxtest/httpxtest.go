// Package httpxtest helps tests speak raw HTTP/1.1 to a server: for the
// requests a client library will not send, such as a body that stops
// half-way.
package httpxtest

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// answerWait bounds the wait for an answer: far longer than any timeout a
// test sets on its server, so a server that never answers fails the test
// instead of hanging it.
const answerWait = 20 * time.Second

// Exchange opens a connection to addr, writes raw (a request as it goes on
// the wire, possibly incomplete) and reads the answer. It returns the
// answer, whose Body has been read into body and closed.
func Exchange(tb testing.TB, addr, raw string) (resp *http.Response, body []byte) {
	tb.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, raw); err != nil {
		tb.Fatal(err)
	}
	if err := conn.SetReadDeadline(time.Now().Add(answerWait)); err != nil {
		tb.Fatal(err)
	}
	resp, err = http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		tb.Fatalf("reading the answer: %v", err)
	}
	body, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		tb.Fatalf("reading the answer's body: %v", err)
	}
	return resp, body
}
