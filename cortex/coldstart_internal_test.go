package cortex

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// lateStream turns whatever the request path writes after the headers of
// an event stream were sent into valid events.
func TestLateStream(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		status int
		ctype  string
		writes []string
		want   string
	}{
		{"an event stream passes", 200, "text/event-stream", []string{"data: {\"a\":1}\n\n", "data: [DONE]\n\n"},
			"data: {\"a\":1}\n\ndata: [DONE]\n\n"},
		{"a JSON error in pieces is one event", 503, "application/json", []string{"{\"error\":{\"message\":\"x\",\n", "\"code\":\"y\"}}\n"},
			"event: error\ndata: {\"error\":{\"message\":\"x\",\"code\":\"y\"}}\n\n"},
		{"a text error is wrapped", 502, "text/plain", []string{"bad gateway"},
			"event: error\ndata: {\"error\":{\"message\":\"bad gateway\",\"type\":\"server_error\",\"param\":null}}\n\n"},
		{"a JSON answer is one data event", 200, "application/json", []string{"{\"object\":\"chat.completion\"}"},
			"data: {\"object\":\"chat.completion\"}\n\ndata: [DONE]\n\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := httptest.NewRecorder()
			rec.WriteHeader(http.StatusOK) // the headers of the keep-alives
			ls := &lateStream{w: rec, rc: http.NewResponseController(rec), header: make(http.Header)}
			ls.Header().Set("Content-Type", tt.ctype)
			ls.WriteHeader(tt.status)
			for _, w := range tt.writes {
				if n, err := ls.Write([]byte(w)); err != nil || n != len(w) {
					t.Fatalf("Write(%q) = %d, %v", w, n, err)
				}
			}
			if diff := cmp.Diff(rec.Body.String(), tt.want); diff != "" {
				t.Errorf("written (-got +want):\n%s", diff)
			}
			if rec.Code != http.StatusOK {
				t.Errorf("status %d: the first one must stand", rec.Code)
			}
		})
	}
}
