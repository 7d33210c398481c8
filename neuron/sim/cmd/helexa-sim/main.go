// Command helexa-sim runs the simulated engine of package neuron/sim as a
// process, the way neuron's process harness runs a real engine:
//
//	helexa-sim --port 40123 --model demo --load-time 2s --ttft 200ms --tps 50
//
// Answers end by themselves at a length drawn from the prompt (finish_reason
// "stop"; --answer-tokens and --answer-spread set the distribution), unless
// the token limit is lower, the request sets "ignore_eos": true, or
// --ignore-eos is given.
//
// With --gpu, or any --gpu-* flag or --time-scale, the engine is paced by
// the GPU model of package sim (a prefix cache, chunked prefill and
// continuous batching of one replica on one GPU) instead of by --ttft and
// --tps, which must then be 0; each --gpu-* flag sets one knob of
// sim.GPU, 0 standing for its default:
//
//	helexa-sim --port 40123 --model demo --gpu --time-scale 0.01 --gpu-cache-tokens 100000
//
// GET /health answers 503 {"status":"loading"} (and every other route 503
// model_not_ready) until --load-time has passed, then 200 {"status":"ok"}.
// GET /sim/stats answers at any time with the engine's counters as JSON
// (sim.Stats: generated_tokens, prompt_tokens, cached_tokens, requests,
// in_flight, last_request_uri), so
// that a test can learn what the engine really generated, whatever its
// answers said; it is not an OpenAI route, and a neuron does not forward it.
// Each --header "Name: value" is set on every response, as real engines
// set their own (llama-server sends Server and Access-Control-Allow-Origin).
// With --llama-connections it handles connections the way llama.cpp's
// llama-server does: every answer announces "Keep-Alive: timeout=5,
// max=100", yet the connection is closed right after each streamed
// answer, and after --idle-timeout (5 s by default) idle; a client that
// reuses a pooled connection must cope.
// It logs a start line and one line per request to stderr. Exit status: 0
// after SIGTERM or SIGINT, 1 after --crash-after tokens of a request or on
// a serve error, 2 for bad flags, 3 when --fail-load ends the load.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/helexa-ai/helexa-go/internal/oaierr"
	"github.com/helexa-ai/helexa-go/neuron"
	"github.com/helexa-ai/helexa-go/neuron/sim"
)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	fs := flag.NewFlagSet("helexa-sim", flag.ContinueOnError)
	host := fs.String("host", "127.0.0.1", "address to listen on")
	port := fs.Int("port", -1, "port to listen on (required; 0 picks a free one)")
	model := fs.String("model", "sim", "model id to report")
	var cfg sim.Config
	fs.DurationVar(&cfg.LoadTime, "load-time", 0, "simulated load time")
	fs.DurationVar(&cfg.TTFT, "ttft", 0, "time to first token")
	fs.Float64Var(&cfg.TokensPerSecond, "tps", 0, "tokens per second after the first (0: as fast as possible)")
	fs.IntVar(&cfg.ContextLength, "context", sim.DefaultContextLength, "context length in tokens")
	fs.IntVar(&cfg.EmbeddingDimensions, "dimensions", sim.DefaultEmbeddingDimensions, "embedding dimensions")
	fs.IntVar(&cfg.CrashAfterTokens, "crash-after", 0, "exit with status 1 after streaming this many tokens of a request (0: never)")
	fs.IntVar(&cfg.AnswerTokens, "answer-tokens", 0, "median length of the answers the model ends by itself (0: 150)")
	fs.Float64Var(&cfg.AnswerSpread, "answer-spread", 0, "spread (log-normal sigma) of those lengths (0: 0.85)")
	fs.BoolVar(&cfg.IgnoreEOS, "ignore-eos", false, "never end an answer by itself: run every answer to its token limit")
	fs.BoolVar(&cfg.FailLoad, "fail-load", false, "fail the load: exit with status 3 after --load-time")
	fs.BoolVar(&cfg.Hang, "hang", false, "send the first token of each answer, then nothing")
	fs.BoolVar(&cfg.LlamaServerConnections, "llama-connections", false,
		"handle connections as llama-server does: announce keep-alive, yet close after every streamed answer and after --idle-timeout idle")
	fs.DurationVar(&cfg.IdleTimeout, "idle-timeout", 0, "close a connection idle this long (0: 5s with --llama-connections, else 2m)")
	var headers headerFlag
	fs.Var(&headers, "header", "a response header \"Name: value\" set on every response (repeatable)")
	var gpu sim.GPU
	fs.Bool("gpu", false, "pace by the GPU model (prefix cache, prefill, continuous batching) instead of --ttft and --tps")
	fs.IntVar(&gpu.BlockTokens, "gpu-block-tokens", 0, "KV block size in tokens (0: 16)")
	fs.IntVar(&gpu.CacheTokens, "gpu-cache-tokens", 0, "KV cache capacity in tokens (0: 400000)")
	fs.DurationVar(&gpu.PrefillPerToken, "gpu-prefill-per-token", 0, "prefill time per uncached prompt token (0: 125µs)")
	fs.DurationVar(&gpu.CachedPerToken, "gpu-cached-per-token", 0, "time per cached prompt token")
	fs.IntVar(&gpu.PrefillChunk, "gpu-prefill-chunk", 0, "prompt tokens prefilled per engine step (0: 8192; -1: whole prompts)")
	fs.DurationVar(&gpu.DecodeBase, "gpu-decode-base", 0, "decode step time of one sequence (0: 10ms)")
	fs.DurationVar(&gpu.DecodePerSeq, "gpu-decode-per-seq", 0, "decode step time added per sequence in the batch (0: 150µs)")
	fs.IntVar(&gpu.MaxBatch, "gpu-max-batch", 0, "most sequences run at once; more wait in a queue (0: 256)")
	fs.Float64Var(&gpu.TimeScale, "time-scale", 0, "multiplies every time of the GPU model: 0.01 runs 100 times faster (0: 1)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fs.Visit(func(f *flag.Flag) {
		on := strings.HasPrefix(f.Name, "gpu-") || f.Name == "time-scale" || f.Name == "gpu" && f.Value.String() == "true"
		if on {
			cfg.GPU = &gpu
		}
	})
	if err := cfg.Validate(); err != nil || *port < 0 || *port > 65535 {
		fmt.Fprintln(os.Stderr, "helexa-sim: --port is required (0-65535; 0 picks a free port); config:", cfg.Validate())
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	ln, err := net.Listen("tcp", net.JoinHostPort(*host, strconv.Itoa(*port)))
	if err != nil {
		log.Error("listen failed", "err", err)
		return 1
	}
	var ready atomic.Bool
	engine := sim.NewEngine(cfg, sim.WithModelID(*model), sim.WithCrashFunc(func() {
		log.Error("crashing: --crash-after tokens sent", "tokens", cfg.CrashAfterTokens)
		os.Exit(1)
	}))
	srv := sim.NewServer(cfg, logRequests(log, headers.wrap(stats(engine, gate(&ready, engine)))))
	srv.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("helexa-sim started", "addr", ln.Addr().String(), "model", *model, "load_time", cfg.LoadTime,
		"ttft", cfg.TTFT, "tps", cfg.TokensPerSecond, "context", cfg.ContextLength)
	if cfg.GPU != nil {
		g := cfg.GPU.WithDefaults()
		log.Info("GPU model", "block_tokens", g.BlockTokens, "cache_tokens", g.CacheTokens,
			"prefill_per_token", g.PrefillPerToken, "cached_per_token", g.CachedPerToken, "prefill_chunk", g.PrefillChunk,
			"decode_base", g.DecodeBase, "decode_per_seq", g.DecodePerSeq, "max_batch", g.MaxBatch, "time_scale", g.TimeScale)
	}

	loaded := time.After(cfg.LoadTime)
	for {
		select {
		case <-loaded:
			loaded = nil
			if cfg.FailLoad {
				log.Error("model load failed", "model", *model, "reason", "--fail-load")
				return 3
			}
			ready.Store(true)
			log.Info("model loaded", "model", *model)
		case err := <-served:
			log.Error("serve failed", "err", err)
			return 1
		case <-ctx.Done():
			log.Info("signal received; shutting down")
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx) // a hanging stream delays it at most 2 s
			_ = srv.Close()
			return 0
		}
	}
}

// gate answers 503 until ready is set: {"status":"loading"} on /health, a
// model_not_ready envelope elsewhere.
func gate(ready *atomic.Bool, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case ready.Load():
			next.ServeHTTP(w, r)
		case r.URL.Path == "/health":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("{\"status\":\"loading\"}\n"))
		default:
			oaierr.Write(w, http.StatusServiceUnavailable, neuron.CodeModelNotReady, "model is loading", time.Second)
		}
	})
}

// stats answers GET /sim/stats with the engine's counters and passes
// everything else to next.
func stats(engine *sim.Engine, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/sim/stats" {
			next.ServeHTTP(w, r)
			return
		}
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", "GET")
			oaierr.Write(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not allowed on /sim/stats", 0)
			return
		}
		b, _ := json.Marshal(engine.Stats()) // a struct of numbers and a string cannot fail
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(append(b, '\n'))
	})
}

// headerFlag collects --header values.
type headerFlag []string

func (h *headerFlag) String() string { return strings.Join(*h, ", ") }

func (h *headerFlag) Set(v string) error {
	name, value, ok := strings.Cut(v, ":")
	if !ok || strings.TrimSpace(name) == "" {
		return fmt.Errorf("want \"Name: value\", got %q", v)
	}
	*h = append(*h, strings.TrimSpace(name)+":"+strings.TrimSpace(value))
	return nil
}

// wrap sets the headers on every response of next.
func (h headerFlag) wrap(next http.Handler) http.Handler {
	if len(h) == 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, kv := range h {
			name, value, _ := strings.Cut(kv, ":")
			w.Header().Add(name, value)
		}
		next.ServeHTTP(w, r)
	})
}

// logRequests logs one line per request after it ends.
func logRequests(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		defer func() {
			log.Info("request", "method", r.Method, "path", r.URL.Path, "status", sw.status, "duration", time.Since(start))
		}()
		next.ServeHTTP(sw, r)
	})
}

// statusWriter records the status of a response; Unwrap lets the engine
// flush through it.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
