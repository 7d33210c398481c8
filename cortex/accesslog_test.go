package cortex_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/cortex/cortextest"
	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/neuron"
)

// logLines receives the lines of a JSON slog handler, decoded, one per
// record; what does not fit in its buffer is dropped rather than block a
// server.
type logLines struct {
	ch  chan map[string]any
	raw chan string
}

func newLogLines() *logLines {
	return &logLines{ch: make(chan map[string]any, 4096), raw: make(chan string, 4096)}
}

func (l *logLines) Write(p []byte) (int, error) {
	var m map[string]any
	if err := json.Unmarshal(p, &m); err != nil {
		return 0, err
	}
	select {
	case l.ch <- m:
	default:
	}
	select {
	case l.raw <- string(p):
	default:
	}
	return len(p), nil
}

// logger returns a logger writing to l at level.
func (l *logLines) logger(level slog.Level) *slog.Logger {
	return slog.New(slog.NewJSONHandler(l, &slog.HandlerOptions{Level: level}))
}

// next returns the next line whose message is msg and whose route is
// route, skipping the others.
func (l *logLines) next(t *testing.T, msg, route string) map[string]any {
	t.Helper()
	for {
		select {
		case m := <-l.ch:
			if m["msg"] == msg && m["route"] == route {
				return m
			}
		case <-t.Context().Done():
			t.Fatalf("no %q line for %s", msg, route)
		}
	}
}

// drained returns every line received so far, once the gateway has
// finished every request (Shutdown waits for them).
func (l *logLines) drained(t *testing.T, gw *cortex.Gateway) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := gw.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	var out []string
	for {
		select {
		case s := <-l.raw:
			out = append(out, s)
		default:
			return out
		}
	}
}

// checkFields compares the fields of a log line with want; a want of nil
// only asks for the field to be there.
func checkFields(t *testing.T, line map[string]any, want map[string]any) {
	t.Helper()
	for k, v := range want {
		got, ok := line[k]
		switch {
		case !ok:
			t.Errorf("access line has no %q: %v", k, line)
		case v != nil && got != v:
			t.Errorf("access line %s = %v (%T), want %v", k, got, got, v)
		}
	}
}

// A request through the gateway and a neuron leaves one access line in
// each daemon's log, with the same request id, which the answer carries
// too: the client's, or one the gateway made. The gateway's line has the
// route, model, status, outcome, tokens, timings, neuron, account and key
// id, and never the key, an Authorization header or prompt text.
func TestAccessLogFollowsARequestAcrossDaemons(t *testing.T) {
	t.Parallel()
	const key = "sk-access-log-canary"
	local := newLocal(t, entitlements.KeyConfig{Key: key, AccountID: "acct", KeyID: "key-1"})
	cortexLog, neuronLog := newLogLines(), newLogLines()
	spec := loadedA("n1")
	spec.AgentOptions = []neuron.Option{neuron.WithAccessLog(neuronLog.logger(slog.LevelInfo))}
	s := newStack(t, []cortextest.Spec{spec}, testCatalogue(t), cortex.WithProvider(local), cortex.WithRequireAuth(true),
		cortex.WithAccessLog(cortexLog.logger(slog.LevelInfo)))

	for _, tt := range []struct {
		name, sent string
		stream     bool
	}{
		{name: "client id", sent: "order-4711"},
		{name: "client id, stream", sent: "order-4712", stream: true},
		{name: "no id"},
		{name: "id with a space", sent: "two words"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			header := []string{"Authorization", "Bearer " + key}
			if tt.sent != "" {
				header = append(header, "X-Request-Id", tt.sent)
			}
			extra := []string{`"max_tokens":2`}
			if tt.stream {
				extra = append(extra, `"stream":true`, `"stream_options":{"include_usage":true}`)
			}
			status, h, body := s.post("/v1/chat/completions", chatBody("chat-a", extra...), header...)
			if status != http.StatusOK {
				t.Fatalf("status %d: %s", status, body)
			}
			id := h.Get("X-Request-Id")
			switch {
			case tt.sent == "order-4711" || tt.sent == "order-4712":
				if id != tt.sent {
					t.Errorf("answer's X-Request-Id = %q, want the client's %q", id, tt.sent)
				}
			case !strings.HasPrefix(id, "req_") || len(id) != 36:
				t.Errorf("answer's X-Request-Id = %q, want a new req_ id", id)
			}
			c := cortexLog.next(t, "cortex: request", "/v1/chat/completions")
			checkFields(t, c, map[string]any{
				"level": "INFO", "method": "POST", "model": "chat-a", "status": float64(200), "outcome": "ok",
				"prompt_tokens": float64(helloEstimate), "completion_tokens": float64(2), "cached_tokens": float64(0),
				"usage": "engine", "stream": tt.stream, "duration": nil, "ttft": nil,
				"neuron": "n1", "account": "acct", "key_id": "key-1", "request_id": id,
			})
			n := neuronLog.next(t, "neuron: request", "/v1/chat/completions")
			checkFields(t, n, map[string]any{
				"level": "INFO", "method": "POST", "model": "chat-a", "status": float64(200), "outcome": "ok",
				"account": "acct", "key_id": "key-1", "request_id": id, "duration": nil,
			})
			if tt.stream {
				checkFields(t, n, map[string]any{"output_tokens": float64(2), "ttft": nil,
					"prompt_tokens": float64(helloEstimate), "completion_tokens": float64(2)})
			}
		})
	}
	for _, line := range cortexLog.drained(t, s.gw) {
		for _, secret := range []string{key, "Bearer", "Hello there"} {
			if strings.Contains(line, secret) {
				t.Errorf("an access line holds %q: %s", secret, line)
			}
		}
	}
}

// The routes outside inference are logged with method, route, status and
// request id: GET /v1/models and an unknown route at info, GET /health at
// debug.
func TestAccessLogOtherRoutes(t *testing.T) {
	t.Parallel()
	lines := newLogLines()
	s := newStack(t, []cortextest.Spec{loadedA("n1")}, testCatalogue(t), cortex.WithAccessLog(lines.logger(slog.LevelDebug)))
	for _, tt := range []struct {
		path   string
		status int
		level  string
	}{
		{"/v1/models", http.StatusOK, "INFO"},
		{"/health", http.StatusOK, "DEBUG"},
		{"/no/such/route", http.StatusNotFound, "INFO"},
	} {
		resp := s.do(http.MethodGet, tt.path, "", "X-Request-Id", "id-"+tt.path)
		resp.Body.Close()
		if resp.StatusCode != tt.status || resp.Header.Get("X-Request-Id") != "id-"+tt.path {
			t.Errorf("GET %s: %d, X-Request-Id %q; want %d, id-%s", tt.path, resp.StatusCode, resp.Header.Get("X-Request-Id"), tt.status, tt.path)
		}
		line := lines.next(t, "cortex: request", tt.path)
		checkFields(t, line, map[string]any{"level": tt.level, "method": "GET", "status": float64(tt.status),
			"request_id": "id-" + tt.path, "duration": nil})
		if _, ok := line["prompt_tokens"]; ok {
			t.Errorf("GET %s: the line has token fields: %v", tt.path, line)
		}
	}
}

// With the access log off (WithAccessLog(nil), or access_log = false in
// cortex.toml), a request that succeeds is not logged; one that failed on
// the fleet's side still is, at warn, on the gateway's logger.
func TestAccessLogOff(t *testing.T) {
	t.Parallel()
	cfg, err := cortex.ParseConfig([]byte("[gateway]\naccess_log = false\n\n[[neurons]]\nname = \"n1\"\nendpoint = \"http://127.0.0.1:1\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	for name, opts := range map[string][]cortex.GatewayOption{
		"WithAccessLog(nil)": {cortex.WithAccessLog(nil)},
		"access_log = false": cfg.GatewayOptions()[:len(cfg.GatewayOptions())-1], // less its poller options
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			lines := newLogLines()
			s := newStack(t, []cortextest.Spec{loadedA("n1")}, testCatalogue(t),
				append(opts, cortex.WithLogger(lines.logger(slog.LevelInfo)))...)
			if status, _, body := s.post("/v1/chat/completions", chatBody("chat-a", `"max_tokens":2`)); status != http.StatusOK {
				t.Fatalf("status %d: %s", status, body)
			}
			s.fleet.Neuron("n1").Stop()
			if status, _, body := s.post("/v1/chat/completions", chatBody("chat-a", `"max_tokens":2`)); status != http.StatusBadGateway {
				t.Fatalf("status %d: %s; want 502", status, body)
			}
			var requests []string
			for _, line := range lines.drained(t, s.gw) {
				if strings.Contains(line, `"msg":"cortex: request"`) {
					requests = append(requests, line)
				}
			}
			if len(requests) != 1 || !strings.Contains(requests[0], `"level":"WARN"`) || !strings.Contains(requests[0], `"status":502`) {
				t.Errorf("request lines %q, want the 502's alone, at warn", requests)
			}
		})
	}
}
