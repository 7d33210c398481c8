package sim_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/helexa-ai/helexa-go/neuron/sim"
)

// benchPost sends body to url b.N times and drains each answer.
func benchPost(b *testing.B, client *http.Client, url, body string) {
	b.Helper()
	b.ReportAllocs()
	for b.Loop() {
		resp, err := client.Post(url, "application/json", strings.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
}

// BenchmarkChat is a non-streaming 16-token chat completion through an
// httptest server (client and server allocations both count).
func BenchmarkChat(b *testing.B) {
	srv := httptest.NewServer(sim.NewEngine(sim.Config{}))
	defer srv.Close()
	benchPost(b, srv.Client(), srv.URL+"/v1/chat/completions", chatBody("Benchmark me, please.", ""))
}

// BenchmarkChatStream is a streaming 64-token chat completion with usage
// through an httptest server: 66 flushed chunks and [DONE].
func BenchmarkChatStream(b *testing.B) {
	srv := httptest.NewServer(sim.NewEngine(sim.Config{}))
	defer srv.Close()
	benchPost(b, srv.Client(), srv.URL+"/v1/chat/completions",
		chatBody("Benchmark me, please.", `"max_tokens":64,"stream":true,"stream_options":{"include_usage":true}`))
}

// discardWriter is a flushable ResponseWriter that drops what it is sent,
// to measure the engine alone.
type discardWriter struct {
	h       http.Header
	written int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(int)             {}
func (w *discardWriter) Write(p []byte) (int, error) { w.written += len(p); return len(p), nil }
func (w *discardWriter) Flush()                      {}

// BenchmarkEngineStream measures the engine alone on a streaming
// 64-token chat completion: its allocations are per request (decoding the
// body), not per token.
func BenchmarkEngineStream(b *testing.B) {
	benchEngine(b, chatBody("Benchmark me, please.", `"max_tokens":64,"stream":true`))
}

// BenchmarkEngineStream1024 is BenchmarkEngineStream with 1024 tokens; its
// allocations match BenchmarkEngineStream's.
func BenchmarkEngineStream1024(b *testing.B) {
	benchEngine(b, chatBody("Benchmark me, please.", `"max_tokens":1024,"stream":true`))
}

func benchEngine(b *testing.B, body string) {
	e := sim.NewEngine(sim.Config{})
	w := &discardWriter{h: http.Header{}}
	r := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", nil)
	b.ReportAllocs()
	for b.Loop() {
		r.Body = io.NopCloser(strings.NewReader(body))
		e.ServeHTTP(w, r)
		clear(w.h)
	}
}

// BenchmarkGPUFleet measures the GPU model's own cost: 8 replicas, each
// with 256 streams of 64 tokens at once, their modelled time scaled to
// next to nothing. One op is one request.
func BenchmarkGPUFleet(b *testing.B) {
	const replicas, streams = 8, 256
	engines := make([]*sim.Engine, replicas)
	for i := range engines {
		engines[i] = sim.NewEngine(sim.Config{GPU: &sim.GPU{TimeScale: 1e-9}})
	}
	body := messagesBody(strings.Repeat("system prompt ", 500), "Benchmark me, please.", `"max_tokens":64,"stream":true`)
	var next atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(replicas * streams / max(runtime.GOMAXPROCS(0), 1))
	b.RunParallel(func(pb *testing.PB) {
		e := engines[next.Add(1)%replicas]
		w := &discardWriter{h: http.Header{}}
		for pb.Next() {
			r := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(body))
			e.ServeHTTP(w, r)
			clear(w.h)
		}
	})
}
