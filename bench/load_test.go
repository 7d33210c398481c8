package main

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestAppendBody(t *testing.T) {
	t.Parallel()
	spec := bodySpec{model: "m", maxTokens: 16, stream: true}
	var got struct {
		Model     string `json:"model"`
		MaxTokens int    `json:"max_tokens"`
		Stream    bool   `json:"stream"`
		Messages  []struct {
			Role, Content string
		} `json:"messages"`
	}
	b1 := spec.appendBody(nil, 1)
	if err := json.Unmarshal(b1, &got); err != nil {
		t.Fatalf("body is not JSON: %v\n%s", err, b1)
	}
	if got.Model != "m" || got.MaxTokens != 16 || !got.Stream || len(got.Messages) != 1 || got.Messages[0].Role != "user" {
		t.Errorf("body = %+v", got)
	}
	if b2 := spec.appendBody(nil, 2); string(b1) == string(b2) {
		t.Errorf("two ids gave the same body %s", b1)
	}
}

// sseServer answers every request with the given writes, flushing after
// each.
func sseServer(t *testing.T, status int, writes ...string) *target {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(status)
		for _, s := range writes {
			_, _ = io.WriteString(w, s)
			w.(http.Flusher).Flush()
		}
	}))
	t.Cleanup(srv.Close)
	return &target{name: "test", label: "test", url: srv.URL}
}

func TestStreamOnce(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		status   int
		writes   []string
		groupGap time.Duration
		want     streamStats // ttft and gaps are not compared
		wantErr  bool
	}{
		{
			name:     "each event apart",
			status:   200,
			writes:   []string{"data: {\"a\":1}\n\n", "data: {\"a\":2}\n\n", "data: [DONE]\n\n"},
			groupGap: 0,
			want:     streamStats{chunks: 3, groups: 3},
		},
		{
			name:     "all within the group gap",
			status:   200,
			writes:   []string{"data: {\"a\":1}\n\n", "data: {\"a\":2}\n\n", "data: [DONE]\n\n"},
			groupGap: time.Hour,
			want:     streamStats{chunks: 3, groups: 1},
		},
		{
			name:     "events split across writes, CRLF, comments and named events",
			status:   200,
			writes:   []string{": keep-alive\r\n\r\nevent: x\r\nda", "ta: {}\r\n", "\r\ndata: [DONE]\r\n\r\n"},
			groupGap: time.Hour,
			want:     streamStats{chunks: 2, groups: 1},
		},
		{
			name:    "no [DONE]",
			status:  200,
			writes:  []string{"data: {}\n\n"},
			wantErr: true,
		},
		{
			name:    "error status",
			status:  503,
			writes:  []string{`{"error":{"message":"busy"}}`},
			wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tg := sseServer(t, tt.status, tt.writes...)
			g := newLoadGen(4)
			defer g.transport.CloseIdleConnections()
			opened := 0
			st, err := g.streamOnce(t.Context(), tg, []byte(`{}`), tt.groupGap, func() { opened++ })
			if (err != nil) != tt.wantErr {
				t.Fatalf("streamOnce error = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if diff := cmp.Diff(streamStats{chunks: st.chunks, groups: st.groups}, tt.want, cmp.AllowUnexported(streamStats{})); diff != "" {
				t.Errorf("stats (-got +want):\n%s", diff)
			}
			if len(st.gaps) != st.chunks-1 {
				t.Errorf("%d gaps for %d chunks", len(st.gaps), st.chunks)
			}
			if opened != 1 {
				t.Errorf("opened called %d times, want 1", opened)
			}
		})
	}
}

func TestStreamOnceStatusError(t *testing.T) {
	t.Parallel()
	tg := sseServer(t, 429, `{"error":{"message":"slow down"}}`)
	g := newLoadGen(4)
	defer g.transport.CloseIdleConnections()
	_, err := g.streamOnce(t.Context(), tg, []byte(`{}`), 0, nil)
	se, ok := errors.AsType[*statusError](err)
	if !ok || se.status != 429 || !strings.Contains(se.body, "slow down") {
		t.Errorf("error = %v, want a 429 *statusError with the body", err)
	}
}

func TestClosedLoopCounts(t *testing.T) {
	t.Parallel()
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer k" {
			http.Error(w, "no key", http.StatusUnauthorized)
			return
		}
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, `{"ok":true}`)
	}))
	t.Cleanup(ok.Close)
	g := newLoadGen(8)
	defer g.transport.CloseIdleConnections()
	spec := bodySpec{model: "m", maxTokens: 1}

	res := g.closedLoop(t.Context(), &target{url: ok.URL, key: "k"}, spec, 4, 10*time.Millisecond, 200*time.Millisecond)
	if res.completed == 0 || res.errs.count() != 0 || res.lat.n != res.completed {
		t.Errorf("with the key: completed %d, errors %s, samples %d", res.completed, res.errs.String(), res.lat.n)
	}
	res = g.closedLoop(t.Context(), &target{url: ok.URL}, spec, 2, 10*time.Millisecond, 200*time.Millisecond)
	if res.completed != 0 || res.errs.count() == 0 || !strings.Contains(res.errs.String(), "HTTP 401") {
		t.Errorf("without the key: completed %d, errors %s", res.completed, res.errs.String())
	}
}

func TestMedianInt(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   []int
		want int
	}{
		{nil, 0},
		{[]int{3}, 3},
		{[]int{5, 1, 3}, 3},
		{[]int{4, 1, 3, 2}, 2},
	}
	for _, tt := range tests {
		if got := medianInt(tt.in); got != tt.want {
			t.Errorf("medianInt(%v) = %d, want %d", tt.in, got, tt.want)
		}
	}
}
