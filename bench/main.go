// Command bench is the benchmark harness of helexa-go: it measures what
// the cortex gateway and the neuron add to each request, side by side with
// a bare reverse-proxy chain in front of the same engine, and prints the
// figures as Markdown tables (and optionally CSV). `make bench` runs it as
// `go run ./bench` after the Go micro-benchmarks.
//
// # What runs
//
// Everything listens on loopback in one run:
//
//   - the simulated engine (neuron/sim, a Harness in this process), tuned
//     to answer at once, with one paced model for streaming, one slow model
//     to hold streams open and one model that is not loaded at start;
//   - a neuron Agent over that engine (this process);
//   - the bare chain, the reference: two httputil.ReverseProxy hops in
//     front of the same engine;
//   - cortex, with auth required, budgets held by the Local entitlements
//     provider (every request reserves and settles), usage scanning and
//     Prometheus metrics, in front of the neuron.
//
// The hop that faces the client, cortex or the first hop of the bare
// chain, runs in a process of its own: the bench binary re-executed with
// -serve. Its resident memory ("gateway RSS", VmRSS of /proc/PID/status)
// and goroutines are then its own, not the load generator's. The second
// hops (the neuron, the bare chain's hop 2) share this process with the
// engine and the load generator, alike for both chains, so the neuron's
// memory is not reported on its own.
//
// # Scenarios
//
//   - closed: closed-loop load at each concurrency of -concurrency (default
//     1, 16, 64), for each target in turn: direct to the engine, the bare
//     chain, the neuron alone, cortex + neuron. Requests/s, p50/p99
//     latency, the latency added over direct, throughput against the bare
//     chain, the gateway's RSS.
//   - open: one open-loop run at a fixed rate for each target (-rate;
//     default a third of cortex's closed-loop throughput at the highest
//     concurrency, a load it carries with room to spare even when other
//     processes take some of the CPU; else 500/s). Latency counts from
//     each request's scheduled time, so queueing shows.
//   - stream: streaming at each concurrency of -stream-concurrency (default
//     1 and 16) against a model that paces its tokens 2 ms apart: time to
//     first token and the gap between chunks, added over direct; every
//     stream's chunk count against the engine's, and how many separate
//     arrivals the chunks made (a relay that batches chunks makes fewer).
//   - streams: -streams (default 1000) streams held open at once through
//     the bare chain and through cortex: the gateway's RSS while they are
//     open, and its goroutines before and after, over two rounds (the
//     first fills the connection pools; the second must not leave more
//     goroutines behind than the first).
//   - cold: -cold (default 100) concurrent requests through cortex for a
//     model that is not loaded: the loads the neuron received (POST
//     /models/load), the loads the engine started, and the answers.
//
// Each figure that has a target in the performance issue prints PASS or
// FAIL next to it: throughput against the chain at concurrency 64, added
// latency against the chain's at concurrencies 1 and 16, time to first
// token added at every streaming concurrency, the chunk counts, RSS and
// goroutines with the open streams, and the cold load. The harness never
// fails on timing: it exits 0 whatever the figures, and non-zero only
// when the stack cannot be started.
//
// # Reading the figures
//
// Every process of the run shares the machine's cores, and the load
// generator, the engine and the second hops share one process: on a small
// machine the ratios compare whole chains, not the gateway alone (use
// -cpuprofile to see the gateway's own share). The header gives the load
// average at the start and the end; when it exceeds the core count, other
// processes competed for the CPU and a single run is noisy, p99 most of
// all. -rounds spreads that noise over the targets alike; it does not
// remove it.
//
// The bare chain's hops send the request body through a LimitReader of
// its Content-Length, to steer clear of a net/http race that otherwise
// cuts one answer in a few thousand (see newBareProxy).
//
// # Flags
//
//	-duration 3s          measured time per cell (plus -warmup)
//	-warmup 0             warm-up per cell; 0 means duration/6
//	-rounds 3             each cell runs in this many slices, the targets
//	                      taking turns (their order rotating), so that
//	                      background load falls on all of them alike
//	-concurrency 1,16,64  closed-loop concurrencies
//	-stream-concurrency 1,16
//	-rate 0               open-loop requests/s; 0 means automatic
//	-streams 1000         streams held open at once
//	-cold 100             concurrent requests for the cold model
//	-only LIST            a subset of closed,open,stream,streams,cold
//	-csv PATH             also write every figure as CSV
//	-quick                1 s cells and 200 open streams, for a smoke test
//	-cpuprofile PATH      CPU profile of the cortex process during its
//	                      first slice at the highest concurrency of the
//	                      scenario that -profile-scenario names
//	-profile-scenario S   closed (the default) or stream
//	-heapprofile PATH     heap profile of the cortex process while the
//	                      open streams are all open (second round)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/helexa-ai/helexa-go/bench/internal/benchenv"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// scenarioNames are the scenarios, in the order they run.
var scenarioNames = []string{"closed", "open", "stream", "streams", "cold"}

// config is the parsed command line.
type config struct {
	duration, warmup time.Duration
	rounds           int
	concurrency      []int
	streamConc       []int
	rate             float64
	streams          int
	slowTokens       int // tokens of each held-open stream
	cold             int
	only             map[string]bool
	csvPath          string
	cpuProfile       string
	profileScenario  string
	heapProfile      string
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && strings.HasPrefix(args[0], "-serve=") {
		return serveChild(strings.TrimPrefix(args[0], "-serve="), args[1:], stdout, stderr)
	}
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	fmt.Fprintln(stderr, "bench: starting the engine, the neuron, the bare chain and cortex on loopback")
	st, err := startStack(ctx)
	if err != nil {
		return err
	}
	defer st.close()
	g := newLoadGen(max(slices.Max(cfg.concurrency), slices.Max(cfg.streamConc), cfg.streams, cfg.cold) + 16)
	defer g.transport.CloseIdleConnections()
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = st.ready(rctx, g)
	cancel()
	if err != nil {
		return err
	}

	loadStart := benchenv.LoadAverage()
	b := &bench{cfg: cfg, st: st, g: g, log: stderr}
	b.rep.header = append(benchenv.MachineHeader(time.Now()),
		fmt.Sprintf("cells: %v measured per target and cell (plus %v of warm-up), in %d rounds with the targets taking turns; unique prompts (~%d bytes)",
			cfg.duration, cfg.warmup, cfg.rounds, len(filler)+20),
		"engine: neuron/sim on loopback, the same for every target; cortex: auth required, budgets reserved and settled by the Local provider, usage scan, Prometheus metrics",
		"gateway RSS: VmRSS of the process of the hop facing the client (cortex, or hop 1 of the bare chain), which runs apart from the load generator",
	)
	for _, name := range scenarioNames {
		if !cfg.only[name] || ctx.Err() != nil {
			continue
		}
		fmt.Fprintf(stderr, "bench: scenario %s\n", name)
		switch name {
		case "closed":
			b.closed(ctx)
		case "open":
			b.open(ctx)
		case "stream":
			b.stream(ctx)
		case "streams":
			b.openStreams(ctx)
		case "cold":
			b.coldLoad(ctx)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	b.rep.header = append(b.rep.header, fmt.Sprintf("load average (1 min): %s at the start, %s at the end; "+
		"above the core count, other processes compete for the CPU and the figures are noisy", loadStart, benchenv.LoadAverage()))
	if err := b.rep.markdown(stdout); err != nil {
		return err
	}
	if cfg.csvPath != "" {
		f, err := os.Create(cfg.csvPath)
		if err != nil {
			return err
		}
		if err := errors.Join(writeCSV(f, b.rep.metrics), f.Close()); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "bench: wrote %s\n", cfg.csvPath)
	}
	return nil
}

// parseFlags reads the command line.
func parseFlags(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dur := fs.Duration("duration", 3*time.Second, "measured time per cell")
	warm := fs.Duration("warmup", 0, "warm-up per cell (0: duration/6)")
	rounds := fs.Int("rounds", 3, "split each cell into this many slices, the targets taking turns")
	conc := fs.String("concurrency", "1,16,64", "closed-loop concurrencies, comma-separated")
	sconc := fs.String("stream-concurrency", "1,16", "streaming concurrencies, comma-separated")
	rate := fs.Float64("rate", 0, "open-loop requests per second (0: a third of cortex's closed-loop throughput at the highest concurrency, else 500)")
	streams := fs.Int("streams", 1000, "streams held open at once")
	cold := fs.Int("cold", 100, "concurrent requests for the cold model")
	only := fs.String("only", strings.Join(scenarioNames, ","), "scenarios to run, comma-separated: "+strings.Join(scenarioNames, ", "))
	csvPath := fs.String("csv", "", "also write every figure to this CSV file")
	quick := fs.Bool("quick", false, "1s cells and 200 open streams, for a smoke test")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of cortex during its first slice at the highest concurrency of -profile-scenario")
	profScenario := fs.String("profile-scenario", "closed", "the scenario -cpuprofile profiles: closed or stream")
	heapProfile := fs.String("heapprofile", "", "write a heap profile of cortex while the open streams are all open")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	cfg := config{duration: *dur, warmup: *warm, rounds: *rounds, rate: *rate, streams: *streams, slowTokens: slowTokens, cold: *cold,
		csvPath: *csvPath, cpuProfile: *cpuProfile, profileScenario: *profScenario, heapProfile: *heapProfile, only: make(map[string]bool)}
	if *quick {
		cfg.duration = time.Second
		cfg.streams = min(cfg.streams, 200)
	}
	if cfg.profileScenario != "closed" && cfg.profileScenario != "stream" {
		return config{}, fmt.Errorf("-profile-scenario %q: want closed or stream", cfg.profileScenario)
	}
	if cfg.duration <= 0 {
		return config{}, errors.New("-duration must be positive")
	}
	if cfg.warmup <= 0 {
		cfg.warmup = cfg.duration / 6
	}
	var err error
	if cfg.concurrency, err = parseInts(*conc); err != nil {
		return config{}, fmt.Errorf("-concurrency: %w", err)
	}
	if cfg.streamConc, err = parseInts(*sconc); err != nil {
		return config{}, fmt.Errorf("-stream-concurrency: %w", err)
	}
	if cfg.rate < 0 || cfg.streams < 1 || cfg.cold < 1 || cfg.rounds < 1 {
		return config{}, errors.New("-rate must not be negative; -streams, -cold and -rounds must be positive")
	}
	for s := range strings.SplitSeq(*only, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !slices.Contains(scenarioNames, s) {
			return config{}, fmt.Errorf("-only: unknown scenario %q (want %s)", s, strings.Join(scenarioNames, ", "))
		}
		cfg.only[s] = true
	}
	return cfg, nil
}

// parseInts parses a comma-separated list of positive integers.
func parseInts(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive integer", f)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, errors.New("empty list")
	}
	return out, nil
}
