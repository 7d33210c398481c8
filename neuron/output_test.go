package neuron_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/helexa-ai/helexa-go/neuron"
)

// greedyEngine streams n content chunks whatever the request says, then
// usage and [DONE]; done is closed when its handler returns, and cancelled
// records that the client went away first.
type greedyEngine struct {
	n         int
	done      chan struct{}
	cancelled chan struct{}
}

func (e *greedyEngine) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer close(e.done)
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	for i := range e.n {
		if _, err := fmt.Fprintf(w, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"t%d\"}}]}\n\n", i); err != nil {
			close(e.cancelled)
			return
		}
		w.(http.Flusher).Flush()
		if r.Context().Err() != nil {
			close(e.cancelled)
			return
		}
	}
	fmt.Fprintf(w, "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":%d}}\n\ndata: [DONE]\n\n", e.n)
}

// TestOutputAllowance: a stream past the allowance cortex sends is cut
// after the allowance, the engine's request is cancelled, and the trailer
// says what went out; a stream within it passes whole with its count.
func TestOutputAllowance(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		generate  int
		allowance string
		wantOut   int
		wantCount string
		wantCut   string
	}{
		{name: "within", generate: 4, allowance: "5", wantOut: 4, wantCount: "4", wantCut: "false"},
		{name: "exactly", generate: 5, allowance: "5", wantOut: 5, wantCount: "5", wantCut: "false"},
		{name: "past", generate: 100000, allowance: "5", wantOut: 5, wantCount: "5", wantCut: "true"},
		{name: "no allowance", generate: 7, allowance: "", wantOut: 7, wantCount: "7", wantCut: "false"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := &greedyEngine{n: tt.generate, done: make(chan struct{}), cancelled: make(chan struct{})}
			eng := httptest.NewServer(e)
			defer eng.Close()
			_, h := newModelTable(t, eng.URL, neuron.ModelInfo{ID: "m1", Status: neuron.StatusLoaded})
			_, srv := startAgent(t, h, nil)
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+"/v1/chat/completions",
				strings.NewReader(`{"model":"m1","stream":true,"max_tokens":5}`))
			if err != nil {
				t.Fatal(err)
			}
			if tt.allowance != "" {
				req.Header.Set(neuron.HeaderMaxOutputTokens, tt.allowance)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Count(string(body), `"content":"t`); got != tt.wantOut {
				t.Errorf("%d content events reached the client, want %d", got, tt.wantOut)
			}
			if got := resp.Trailer.Get(neuron.TrailerOutputTokens); got != tt.wantCount {
				t.Errorf("trailer %s = %q, want %q", neuron.TrailerOutputTokens, got, tt.wantCount)
			}
			if got := resp.Trailer.Get(neuron.TrailerOutputCut); got != tt.wantCut {
				t.Errorf("trailer %s = %q, want %q", neuron.TrailerOutputCut, got, tt.wantCut)
			}
			<-e.done
			select {
			case <-e.cancelled:
				if tt.wantCut != "true" {
					t.Error("the engine's request was cancelled, want it to finish")
				}
			default:
				if tt.wantCut == "true" {
					t.Error("the engine generated everything: its request was not cancelled")
				}
			}
		})
	}
}

// TestForward_AmbiguousBodyRefused: a body that reaches the neuron by
// another path than cortex is refused with the gateway's rules, not read by
// the engine its own way.
func TestForward_AmbiguousBodyRefused(t *testing.T) {
	t.Parallel()
	eng := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("the engine got %s %s", r.Method, r.URL)
	}))
	defer eng.Close()
	_, h := newModelTable(t, eng.URL, neuron.ModelInfo{ID: "m1", Status: neuron.StatusLoaded})
	_, srv := startAgent(t, h, nil)
	for _, tt := range []struct{ body, code string }{
		{`{"model":"m1","model":"m2"}`, neuron.CodeAmbiguousRequest},
		{`{"model":"m1","MODEL":"m2"}`, neuron.CodeAmbiguousRequest},
		{`{"model":"m1","max_tokens":5,"Max_Tokens":100000}`, neuron.CodeAmbiguousRequest},
		{`{"model":"m1","\u006eax_tokens":1,"n_predict":2,"n_predict":9}`, neuron.CodeAmbiguousRequest},
		{`[{"model":"m1"}]`, neuron.CodeInvalidBody},
		{`{"stream":true}`, neuron.CodeMissingModel},
	} {
		resp, err := srv.Client().Post(srv.URL+"/v1/chat/completions", "application/json", strings.NewReader(tt.body))
		if err != nil {
			t.Fatal(err)
		}
		var env struct {
			Error struct{ Code string } `json:"error"`
		}
		err = json.NewDecoder(resp.Body).Decode(&env)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusBadRequest || env.Error.Code != tt.code {
			t.Errorf("%s: status %d, code %q (%v); want 400 %s", tt.body, resp.StatusCode, env.Error.Code, err, tt.code)
		}
	}
}

// TestForward_EngineClosesAPooledConnection: an engine that closes a
// connection as the next request arrives on it (llama-server closes after
// every streamed answer, although it announces keep-alive) costs that
// request nothing: it is sent again on a new connection.
func TestForward_EngineClosesAPooledConnection(t *testing.T) {
	t.Parallel()
	var requests atomic.Int64
	eng := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		n := requests.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", "2")
		_, _ = io.WriteString(w, "{}")
		if n != 1 {
			return
		}
		// The first connection: wait for the next request's first bytes,
		// then close it unanswered.
		rc := http.NewResponseController(w)
		if err := rc.Flush(); err != nil {
			t.Error(err)
			return
		}
		conn, brw, err := rc.Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		_ = brw.Flush()
		_, _ = brw.Reader.Peek(1)
		conn.Close()
	}))
	defer eng.Close()
	_, h := newModelTable(t, eng.URL, neuron.ModelInfo{ID: "m1", Status: neuron.StatusLoaded})
	_, srv := startAgent(t, h, nil)
	for i := range 3 {
		resp, err := srv.Client().Post(srv.URL+"/v1/chat/completions", "application/json", strings.NewReader(`{"model":"m1"}`))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("request %d: status %d: %s", i+1, resp.StatusCode, body)
		}
	}
}
