// Command fleet is the fleet benchmark of helexa-go: it measures what
// routing does to a fleet of GPUs whose engines keep a prefix cache, by
// running three routing policies over the same simulated fleet and the
// same traffic, and how a Scaler follows a burst (issue 22), and prints
// the figures as Markdown tables with PASS/FAIL next to the targets of
// issues 17 and 22. `make bench` runs it as
// `go run ./bench/fleet` after the gateway benchmark.
//
// # What runs
//
// Everything runs in this process, on loopback. Each cell (one workload,
// one offered rate, one policy) gets a fresh fleet, so that every cell
// starts with cold caches and no cell inherits another's state:
//
//   - 8 neurons, each a neuron.Agent over its own sim.Harness with one
//     replica of the same model, served on 127.0.0.1:0. The Harness paces
//     the replica by the sim's GPU model (sim.GPU): a prefix cache of KV
//     blocks, prefill per uncached prompt token holding the engine, and
//     continuous batching of decode steps;
//   - one cortex.Gateway (three for the replicas check) in front of all
//     eight, anonymous, with the policy's Router and the default poller;
//   - the load generator: open-loop Poisson arrivals, each a streamed chat
//     completion with stream_options.include_usage, spread round robin
//     over the gateways.
//
// # The GPU model
//
// sim.GPU's A100 defaults (8,000 prompt tokens/s of prefill, a decode step
// of 10 ms + 150 µs per sequence) with three changes:
//
//   - CacheTokens 16,000 (the default is 400,000). A real fleet routes
//     thousands of tenants and conversations, whose prompts together far
//     exceed one GPU's KV cache: a replica keeps only a slice of them,
//     unless the router sends each prefix to the same replica. The bench
//     has 16 tenants of 2,000 tokens (32,000 tokens) and 64 conversations
//     of 1,000 tokens and more: 16,000 tokens per replica, running
//     sequences' KV included (the sim counts them against the capacity),
//     keeps that ratio. With 400,000 tokens every replica would hold
//     every prompt after its first miss, and routing would not matter.
//   - MaxBatch 64 (vLLM's default is 256): the batches here never need
//     more.
//   - TimeScale 2: the GPU runs at half an A100's speed. A request's life
//     is some 5 to 6 times its prefill on any real GPU (128 decode steps
//     against 2,000 prompt tokens); at half speed a multi-tenant request
//     lives about 3 s, so a cell's 4 s window sees the fleet near its
//     steady state, while the chunks streamed (every one relayed by the
//     neuron, the gateway and the load generator, all in this process)
//     stay at a few thousand per second, which two shared cores carry
//     (the header gives the CPU time the run took). Every time in the
//     tables is real time, twice the A100's.
//
// # Workloads
//
// Text is random words, 4 bytes per token in the sim's estimate.
//
//   - (a) multi-tenant: 16 tenants, each with its own 2,000-token system
//     prompt; each request is a random tenant's prompt and a user turn of
//     30 to 50 tokens; answers of 128 tokens.
//   - (b) conversations: 64 sessions, each opening with 1,000 tokens of
//     its own (instructions, a document). Before the arrivals start, every
//     session sends its first turn, all at once, through the cell's
//     policy: the conversations are under way, their openings cached
//     wherever the policy sent them, and the cell does not measure a burst
//     of 64 cold openings at its start. An arrival is then the next turn
//     of the session idle the longest; while none is idle, arrivals wait
//     for one (that wait is in their TTFT). A turn appends its 16-token
//     answer and a new 30-token user message to the session's history, so
//     its context grows turn by turn, and the session is idle again after
//     a think time (exponential, mean 300 ms). Without one, a saturated
//     fleet would send each next turn the instant its answer ends, to the
//     replica that just freed a slot, which least-loaded then picks: an
//     affinity by accident that users, who read before they answer, do
//     not give. Answers are short and the opening long so that 64
//     sessions can offer a load past least-loaded's saturation at all.
//   - (c) unique prompts: 520 tokens (2,080 bytes, just over the 2 KiB
//     the prefix affinity keys on), new from the first byte; answers of
//     128 tokens. Nothing to share: the cost of the affinity alone.
//
// Every policy of a cell sees the same arrivals and the same prompts (the
// same seeds).
//
// # Rates
//
// The offered rates are multiples (-loads, defaults per workload) of the
// fleet's capacity estimate without a cache: per replica, one request
// costs its prompt's prefill plus its share of full decode batches,
//
//	prompt × PrefillPerToken + tokens × (DecodeBase + MaxBatch × DecodePerSeq) / MaxBatch,
//
// times TimeScale, and the fleet serves 8 of them in that time. 0.5× is
// below least-loaded's saturation; 2.25× ((b): 2.5×) is past it
// (least-loaded finds some prefixes cached, so it saturates above 1×, but
// well below), where a router that finds the cache can serve the whole
// load, so that the throughput ratio can reach 2×. For (c)
// the second rate is 1.25×: nothing is cached there, so every policy
// saturates near 1×, and a higher rate would only stream more tokens
// than the machine relays.
//
// # Figures
//
// Each cell offers arrivals for -duration (6 s) and measures over the
// window from -warmup (2 s) to -duration, after the fleet has filled:
//
//   - TTFT p50, p99 and mean of the requests that arrived in the window,
//     from their scheduled arrival to their first content chunk. A request
//     still without one at the cutoff (-duration plus -drain, 0.5 s, when
//     every request left is cancelled) counts with its time to the cutoff,
//     a lower bound: such figures are marked ≥;
//   - req/s: requests that completed in the window, per second; out tok/s:
//     content chunks (one token each) received in the window, per second;
//   - hit ratio: Σ cached_tokens / Σ prompt_tokens over the usage chunks of
//     the window's requests that completed by the cutoff, the same
//     requests as the TTFT's; "-" when none did (a request lives seconds,
//     so on a busy machine a saturated policy may complete none; counting
//     the warm-up's requests instead would mix in the cold start);
//   - busiest/mean: each neuron's requests in flight and queued (its
//     Agent's Health, as GET /health reports it), sampled every 50 ms over
//     the window and averaged over time; the busiest neuron's average
//     against the mean of all.
//
// Then two checks on (a) at its highest rate with prefix-aware routing:
// three gateways in front of one fleet (each its own poller and Router,
// the client spreading requests over them), whose hit ratio is compared
// with one gateway's; and a hot prefix, every request one tenant's, where
// the affinity's bounded load must spread the work.
//
// # Burst (issue 22)
//
// Replicas that follow demand: workload (c), unique prompts, offered at
// 6× one replica's capacity estimate (28.7 req/s), least-loaded routing,
// over three fresh fleets of the same 8 neurons:
//
//   - one replica: min_replicas = max_replicas = 1, one neuron loaded;
//   - preloaded: min_replicas = max_replicas = 8, all eight loaded;
//   - scaling: min_replicas 1, max_replicas 8, one neuron loaded; the
//     gateway's Scaler (cortex.WithScaler) loads the others as work
//     grows, each load taking 2 s (sim.Config.LoadTime, on the neurons
//     not preloaded).
//
// The Scaler is route.NewScaler with WithTargetWork(4) (the default: one
// replica of unique prompts queues past a few requests), WithScaleWindow(0)
// (the target below leaves one poll interval from the burst's start to
// the decision, and the gateway's scale step itself comes every 2 s) and
// WithScaleCooldown(1s) (under the scale step, so that the ramp adds one
// replica per step).
//
// The scaling cell offers arrivals for -burst-duration (22 s) and measures
// from -burst-warmup (18 s), after its ramp (at one replica per 2 s step,
// seven loads end near 15 s); it still drains the ramp's queue then, so
// its req/s may pass the offered rate and its TTFT includes that queue.
// The fixed fleets measure a window as long from 8 s, when the preloaded
// one is at its steady state. Replicas over time are the gateway's view
// (route.CountReplicas over its snapshot: a load shows as loading from the
// poll that sees it), sampled every 50 ms and printed where they change;
// the time to the first extra replica is from the first arrival to the
// first sample with two ready.
//
// # Targets
//
// PASS or FAIL, from ratios within the same run: on (a) and (b) at the
// highest rate, prefix-aware has at least 2× the output tokens/s and at
// most a fifth of the mean TTFT of least-loaded; on (c) at every rate,
// prefix-aware's output tokens/s are at least 95% of least-loaded's and
// its p99 TTFT at most 105%; with the hot prefix, no neuron above 1.3×
// the mean load; with three gateways, a hit ratio at most 5 points below
// one gateway's (more is no drift: it happens when each gateway, seeing
// only its own requests live, spills less); in the burst, the scaling
// fleet's output tokens/s after its ramp at least 0.8 of the preloaded
// fleet's, and its first extra replica ready within one load (2 s) and
// one poll interval. The command never fails on
// timing: it exits 0 whatever the figures, and non-zero only when a fleet
// cannot be started.
//
// # Reading the figures
//
// The load generator, the gateways, the neurons and the simulated engines
// share this process and the machine's cores. The sim's scheduler drops
// time it cannot keep up with rather than bursting to make it up, so an
// overloaded machine slows the GPUs down for every policy alike, but a
// busy machine makes the figures noisy, p99 most of all. The header gives
// the load average at the start and the end; above the core count, other
// processes competed for the CPU.
//
// A cell is seconds long and starts cold. Least-loaded and round robin
// would find somewhat more of (a)'s prefixes cached after minutes (a
// replica of 16,000 tokens holds some of the 16 tenants), so below
// saturation their hit ratios here are lower than at steady state; past
// it, least-loaded is bound by prefill whatever the cache holds.
//
// # Flags
//
//	-duration 6s      arrivals per cell
//	-warmup 2s        start of the measured window
//	-drain 500ms      time after the arrivals before the cutoff
//	-loads LIST       offered loads as multiples of the capacity estimate,
//	                  for every workload (default: per workload, above)
//	-policies LIST    a subset of round-robin,least-loaded,prefix-aware
//	-workloads LIST   a subset of tenants,sessions,unique,replicas,hot,burst
//	                  (-workloads burst runs the burst alone, in about a
//	                  minute)
//	-burst-duration 22s, -burst-warmup 18s
//	                  the burst's scaling cell: arrivals, start of its
//	                  measured window
//	-neurons 8        neurons in the fleet
//	-timescale 2      sim.GPU.TimeScale
//	-cache 16000      sim.GPU.CacheTokens
//	-seed 1           seed of the arrivals and prompts
//	-csv PATH         also write every cell as CSV
//	-poll 0           the gateways' poll interval of the neurons (0:
//	                  route.DefaultPollInterval, 2 s)
//	-affinity-depth, -affinity-bound, -affinity-weight
//	                  the PrefixAffinity of prefix-aware (default: the
//	                  route package's defaults)
package main

import (
	"cmp"
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
	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/neuron/sim"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "fleet:", err)
		os.Exit(1)
	}
}

// config is the parsed command line.
type config struct {
	t         timing
	loads     []float64 // nil: each workload's own
	policies  []string
	workloads map[string]bool
	neurons   int
	gpu       sim.GPU
	seed      uint64
	csvPath   string
	affinity  route.PrefixAffinity // of prefix-aware; zero fields: defaults
	poll      time.Duration        // the gateways' poll interval; 0: default
	burst     timing               // of the burst's scaling cell
}

// benchGPU is the GPU model of the bench (see the package documentation).
func benchGPU() sim.GPU {
	g := sim.DefaultGPU()
	g.CacheTokens = 16000
	g.MaxBatch = 64
	g.TimeScale = 2
	return g
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("fleet", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg config
	g := benchGPU()
	fs.DurationVar(&cfg.t.duration, "duration", 6*time.Second, "arrivals per cell")
	fs.DurationVar(&cfg.t.warmup, "warmup", 2*time.Second, "start of the measured window")
	fs.DurationVar(&cfg.t.drain, "drain", 500*time.Millisecond, "time after the arrivals before the cutoff")
	loads := fs.String("loads", "", "offered loads as multiples of the capacity estimate (default: per workload)")
	policies := fs.String("policies", strings.Join(policyNames, ","), "policies to run")
	fs.DurationVar(&cfg.burst.duration, "burst-duration", 22*time.Second, "arrivals of the burst's scaling cell")
	fs.DurationVar(&cfg.burst.warmup, "burst-warmup", 18*time.Second, "start of the burst's scaling cell's window, after its ramp")
	wls := fs.String("workloads", "tenants,sessions,unique,replicas,hot,burst", "workloads and checks to run")
	fs.IntVar(&cfg.neurons, "neurons", 8, "neurons in the fleet")
	fs.Float64Var(&g.TimeScale, "timescale", g.TimeScale, "sim.GPU.TimeScale")
	fs.IntVar(&g.CacheTokens, "cache", g.CacheTokens, "sim.GPU.CacheTokens")
	seed := fs.Uint64("seed", 1, "seed of the arrivals and prompts")
	fs.StringVar(&cfg.csvPath, "csv", "", "also write every cell as CSV to this path")
	fs.DurationVar(&cfg.poll, "poll", 0, "the gateways' poll interval of the neurons (0: route.DefaultPollInterval)")
	fs.IntVar(&cfg.affinity.Depth, "affinity-depth", 0, "PrefixAffinity.Depth of prefix-aware (0: default)")
	fs.Float64Var(&cfg.affinity.Bound, "affinity-bound", 0, "PrefixAffinity.Bound of prefix-aware (0: default)")
	fs.Float64Var(&cfg.affinity.Weight, "affinity-weight", 0, "PrefixAffinity.Weight of prefix-aware (0: default)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	cfg.gpu, cfg.seed = g, *seed
	if err := g.Validate(); err != nil {
		return cfg, err
	}
	if cfg.t.warmup < 0 || cfg.t.duration <= cfg.t.warmup || cfg.t.drain < 0 {
		return cfg, errors.New("need 0 <= -warmup < -duration and -drain >= 0")
	}
	if cfg.burst.warmup < 0 || cfg.burst.duration <= cfg.burst.warmup {
		return cfg, errors.New("need 0 <= -burst-warmup < -burst-duration")
	}
	cfg.burst.drain = cfg.t.drain
	if cfg.neurons < 1 {
		return cfg, errors.New("-neurons must be at least 1")
	}
	if *loads != "" {
		for f := range strings.SplitSeq(*loads, ",") {
			v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
			if err != nil || !(v > 0) {
				return cfg, fmt.Errorf("bad -loads value %q", f)
			}
			cfg.loads = append(cfg.loads, v)
		}
	}
	for p := range strings.SplitSeq(*policies, ",") {
		if !slices.Contains(policyNames, p) {
			return cfg, fmt.Errorf("unknown policy %q", p)
		}
		cfg.policies = append(cfg.policies, p)
	}
	cfg.workloads = map[string]bool{}
	for w := range strings.SplitSeq(*wls, ",") {
		if !slices.Contains([]string{"tenants", "sessions", "unique", "replicas", "hot", "burst"}, w) {
			return cfg, fmt.Errorf("unknown workload %q", w)
		}
		cfg.workloads[w] = true
	}
	return cfg, nil
}

// orDefault is v, or def when v is zero.
func orDefault[T int | float64](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

// capacity estimates the requests/s the fleet serves of w without a
// prefix cache (see the package documentation).
func capacity(w *workload, g sim.GPU, neurons int) float64 {
	perReq := g.PrefillTime(w.meanPrompt, 0) + time.Duration(w.maxTokens)*g.DecodeStepTime(g.MaxBatch)/time.Duration(g.MaxBatch)
	return float64(neurons) / (perReq.Seconds() * g.TimeScale)
}

func run(args []string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	began := time.Now()
	rep := &report{loadStart: benchenv.LoadAverage(), header: benchenv.MachineHeader(began)}
	rep.header = append(rep.header,
		fmt.Sprintf("fleet: %d neurons, one replica each of the sim's GPU model: cache %d tokens, prefill %v/token, decode step %v + %v/sequence, batch ≤ %d, time scale %g (times are real, %g× an A100's)",
			cfg.neurons, cfg.gpu.CacheTokens, cfg.gpu.PrefillPerToken, cfg.gpu.DecodeBase, cfg.gpu.DecodePerSeq, cfg.gpu.MaxBatch, cfg.gpu.TimeScale, cfg.gpu.TimeScale),
		fmt.Sprintf("cells: a fresh fleet each; Poisson arrivals for %v, measured from %v, cut at +%v; streamed chat completions through cortex (anonymous)",
			cfg.t.duration, cfg.t.warmup, cfg.t.drain),
		fmt.Sprintf("policies: round-robin (a counter over the ready replicas), least-loaded (route.NewRouter()), prefix-aware (route.NewRouter with route.PrefixAffinity{Depth: %d, Bound: %g, Weight: %g})",
			orDefault(cfg.affinity.Depth, route.DefaultAffinityDepth), orDefault(cfg.affinity.Bound, route.DefaultAffinityBound),
			orDefault(cfg.affinity.Weight, route.DefaultAffinityWeight)))
	cellRunT := func(c cell, t timing) *result {
		name := c.w.name
		if c.scale != nil {
			name = "burst (" + c.scale.name + ")"
		}
		fmt.Fprintf(stderr, "fleet: %s at %.1f req/s, %s, %d gateway(s)\n", name, c.rate, c.policy, c.gateways)
		r, err := runCell(ctx, c, cfg, t)
		if err != nil {
			if ctx.Err() == nil {
				fmt.Fprintf(stderr, "fleet: cell failed: %v\n", err)
			}
			return nil
		}
		return r
	}
	cellRun := func(c cell) *result { return cellRunT(c, cfg.t) }
	for i, w := range workloads() {
		if !cfg.workloads[w.name] {
			continue
		}
		loads := w.loads
		if cfg.loads != nil {
			loads = cfg.loads
		}
		capa := capacity(w, cfg.gpu, cfg.neurons)
		ws := &workloadResults{w: w, capacity: capa}
		for j, l := range loads {
			for _, p := range cfg.policies {
				c := cell{w: w, load: l, rate: l * capa, policy: p, gateways: 1, seed: uint64(100*i+j) + cfg.seed*1000}
				if r := cellRun(c); r != nil {
					ws.results = append(ws.results, r)
				}
				if ctx.Err() != nil {
					return ctx.Err()
				}
			}
		}
		rep.workloads = append(rep.workloads, ws)
	}
	// The checks: (a) at its highest load, prefix-aware.
	tenantsW := workloads()[0]
	top := slices.Max(tenantsW.loads)
	if cfg.loads != nil {
		top = slices.Max(cfg.loads)
	}
	topRate := top * capacity(tenantsW, cfg.gpu, cfg.neurons)
	topSeed := uint64(100*0+slices.Index(tenantsW.loads, top)) + cfg.seed*1000
	if cfg.loads != nil {
		topSeed = uint64(slices.Index(cfg.loads, top)) + cfg.seed*1000
	}
	if cfg.workloads["replicas"] {
		rep.one = rep.find("tenants", top, policyPrefix)
		if rep.one == nil { // tenants not run: measure one gateway here
			rep.one = cellRun(cell{w: tenantsW, load: top, rate: topRate, policy: policyPrefix, gateways: 1, seed: topSeed})
		}
		rep.three = cellRun(cell{w: tenantsW, load: top, rate: topRate, policy: policyPrefix, gateways: 3, seed: topSeed})
	}
	if cfg.workloads["hot"] && ctx.Err() == nil {
		rep.hot = cellRun(cell{w: hotWorkload(), load: top, rate: topRate, policy: policyPrefix, gateways: 1, seed: topSeed})
	}
	if cfg.workloads["burst"] && ctx.Err() == nil {
		w := workloads()[2] // (c) unique prompts
		rep.burstCapacity = capacity(w, cfg.gpu, 1)
		rep.burstTiming, rep.fixedTiming, rep.poll = cfg.burst, fixedTiming(cfg.burst), cmp.Or(cfg.poll, route.DefaultPollInterval)
		for _, sc := range burstSetups(cfg.neurons) {
			c := cell{w: w, load: burstLoad, rate: burstLoad * rep.burstCapacity, policy: policyLL, gateways: 1,
				seed: 900 + cfg.seed*1000, scale: sc}
			t := fixedTiming(cfg.burst)
			if sc.min != sc.max {
				t = cfg.burst
			}
			if r := cellRunT(c, t); r != nil {
				rep.burst = append(rep.burst, r)
			}
			if ctx.Err() != nil {
				break
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	rep.loadEnd = benchenv.LoadAverage()
	rep.elapsed = time.Since(began)
	rep.cpu = cpuTime()
	if err := rep.markdown(stdout); err != nil {
		return err
	}
	if cfg.csvPath != "" {
		f, err := os.Create(cfg.csvPath)
		if err != nil {
			return err
		}
		if err := errors.Join(rep.csv(f), f.Close()); err != nil {
			return err
		}
	}
	return nil
}
