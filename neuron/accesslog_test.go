package neuron_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/helexa-ai/helexa-go/neuron"
)

// logLines receives the lines of a JSON slog handler, decoded; what does
// not fit in its buffer is dropped rather than block the agent.
type logLines chan map[string]any

func (l logLines) Write(p []byte) (int, error) {
	var m map[string]any
	if err := json.Unmarshal(p, &m); err != nil {
		return 0, err
	}
	select {
	case l <- m:
	default:
	}
	return len(p), nil
}

func (l logLines) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// next returns the next access line of route.
func (l logLines) next(t *testing.T, route string) map[string]any {
	t.Helper()
	for {
		select {
		case m := <-l:
			if m["msg"] == "neuron: request" && m["route"] == route {
				return m
			}
		case <-t.Context().Done():
			t.Fatalf("no access line for %s", route)
		}
	}
}

// streamEngine answers with a stream of two tokens and a usage chunk, and
// an X-Request-Id of its own; it records the X-Request-Id it received.
func streamEngine(got chan<- string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Get("X-Request-Id")
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("X-Request-Id", "the-engine's-own")
		_, _ = io.WriteString(w, `data: {"choices":[{"index":0,"delta":{"content":"a"}}]}`+"\n\n")
		_, _ = io.WriteString(w, `data: {"choices":[{"index":0,"delta":{"content":"b"},"finish_reason":"stop"}]}`+"\n\n")
		_, _ = io.WriteString(w, `data: {"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}`+"\n\n")
		_, _ = io.WriteString(w, "data: [DONE]\n\n")
	})
}

// Every request to the agent has a request id: the caller's X-Request-Id
// (cortex's), or one the agent makes. The engine receives it, the answer
// carries it (not the engine's own), and the access line names it with the
// model, status, account, output tokens and the engine's usage. Polls are
// logged at debug, refusals at info; the token never appears.
func TestAccessLogAndRequestID(t *testing.T) {
	t.Parallel()
	got := make(chan string, 4)
	eng := httptest.NewServer(streamEngine(got))
	t.Cleanup(eng.Close)
	_, h := newModelTable(t, eng.URL, neuron.ModelInfo{ID: "m1", Status: neuron.StatusLoaded})
	lines := make(logLines, 256)
	_, srv := startAgent(t, h, nil, neuron.WithToken("neuron-token"), neuron.WithAccessLog(lines.logger()))

	body := `{"model":"m1","stream":true,"messages":[{"role":"user","content":"Hello there"}]}`
	for _, sent := range []string{"from-cortex-1", ""} {
		header := []string{"Authorization", "Bearer neuron-token", neuron.HeaderAccountID, "acct", neuron.HeaderKeyID, "key-1"}
		if sent != "" {
			header = append(header, "X-Request-Id", sent)
		}
		a := send(t, t.Context(), srv, "POST", "/v1/chat/completions", body, header...)
		if a.status != http.StatusOK {
			t.Fatalf("status %d: %s", a.status, a.body)
		}
		id := a.header.Get("X-Request-Id")
		if ids := a.header.Values("X-Request-Id"); len(ids) != 1 || sent != "" && id != sent || sent == "" && !strings.HasPrefix(id, "req_") {
			t.Errorf("answer's X-Request-Id %q, sent %q", ids, sent)
		}
		if e := <-got; e != id {
			t.Errorf("the engine got X-Request-Id %q, want %q", e, id)
		}
		line := lines.next(t, "/v1/chat/completions")
		for k, v := range map[string]any{"level": "INFO", "method": "POST", "model": "m1", "status": float64(200), "outcome": "ok",
			"request_id": id, "account": "acct", "key_id": "key-1", "output_tokens": float64(2),
			"prompt_tokens": float64(5), "completion_tokens": float64(2), "cached_tokens": float64(0)} {
			if line[k] != v {
				t.Errorf("access line %s = %v, want %v (%v)", k, line[k], v, line)
			}
		}
		for _, k := range []string{"duration", "ttft"} {
			if _, ok := line[k]; !ok {
				t.Errorf("access line has no %s: %v", k, line)
			}
		}
	}

	a := send(t, t.Context(), srv, "GET", "/models", "", "Authorization", "Bearer neuron-token")
	if line := lines.next(t, "/models"); line["level"] != "DEBUG" || line["status"] != float64(a.status) {
		t.Errorf("GET /models: %v", line)
	}
	a = send(t, t.Context(), srv, "POST", "/models/unload", `{"model_id":"m1"}`, "Authorization", "Bearer wrong-token")
	line := lines.next(t, "/models/unload")
	if a.status != http.StatusUnauthorized || line["level"] != "INFO" || line["status"] != float64(401) || line["outcome"] != "client_error" {
		t.Errorf("a refused unload: %d, %v", a.status, line)
	}
	for _, v := range line {
		if s, ok := v.(string); ok && strings.Contains(s, "token") {
			t.Errorf("the access line holds %q: %v", s, line)
		}
	}
}

// WithAccessLog(nil) and access_log = false in neuron.toml turn the access
// log off; the request id stays.
func TestAccessLogOffKeepsRequestIDs(t *testing.T) {
	t.Parallel()
	cfg, err := neuron.ParseConfig([]byte("access_log = false\n[[engines]]\nname = \"e\"\ncommand = [\"true\"]\n\n[discovery]\nkind = \"static\"\n[[discovery.devices]]\nindex = 0\ntotal_mb = 1000\n"))
	if err != nil {
		t.Fatal(err)
	}
	for name, opts := range map[string][]neuron.Option{
		"WithAccessLog(nil)": {neuron.WithAccessLog(nil)},
		"access_log = false": cfg.AgentOptions(),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, h := newModelTable(t, "http://127.0.0.1:1")
			lines := make(logLines, 256)
			a, err := neuron.NewAgent(h, neuron.NewStaticDiscoverer(gpus(1, 1000)), append(opts, neuron.WithLogger(lines.logger()))...)
			if err != nil {
				t.Fatal(err)
			}
			// Served in the test's goroutine: a line would be written
			// before ServeHTTP returns.
			rec := httptest.NewRecorder()
			a.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/version", nil))
			if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Header().Get("X-Request-Id"), "req_") {
				t.Errorf("GET /version: %d, X-Request-Id %q", rec.Code, rec.Header().Get("X-Request-Id"))
			}
			select {
			case m := <-lines:
				t.Errorf("a line with the access log off: %v", m)
			default:
			}
		})
	}
}
