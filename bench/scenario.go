package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Targets of the performance issue.
const (
	// throughputTarget: cortex + neuron at concurrency throughputConc
	// serves at least this fraction of the bare chain's requests/s.
	throughputTarget = 0.80
	throughputConc   = 64
	// addedTarget: the latency cortex + neuron adds over direct, at the
	// concurrencies of addedConcs, is at most this multiple of what the
	// bare chain adds, at p50 and p99.
	addedTarget = 1.5
	// ttftTarget bounds the time to first token cortex adds, at p50.
	ttftTarget = time.Millisecond
	// rssTarget bounds the gateway's resident memory with the open streams.
	rssTarget = 150e6
	// goroutineSlack is how many more goroutines than before the open
	// streams the gateway may have after them (timers, pollers in flight).
	goroutineSlack = 10
)

// addedConcs are the concurrencies at which the added-latency target holds.
var addedConcs = []int{1, 16}

// Request sizes.
const (
	fastTokens   = 16 // output tokens of the closed and open loops
	streamTokens = 16 // tokens of a paced stream, streamInterval apart
	slowTokens   = 15 // default tokens of a held-open stream, slowInterval apart
)

// bench runs the scenarios and collects the report.
type bench struct {
	cfg config
	st  *stack
	g   *loadGen
	log io.Writer
	rep report

	// cortexRate is cortex's closed-loop throughput at the highest
	// concurrency, once measured; the open loop's default rate derives from it.
	cortexRate float64
}

func (b *bench) progress(format string, args ...any) {
	fmt.Fprintf(b.log, "bench:   "+format+"\n", args...)
}

// interleave runs fn for every target, -rounds times, each time for a
// slice of -duration after a slice of -warmup (at least 100 ms). The
// order of the targets rotates from round to round, so that a burst of
// background load on the machine falls on every target alike instead of
// on the one that happens to run then. fn gets the round number.
func (b *bench) interleave(ctx context.Context, targets []*target, fn func(t *target, round int, warm, dur time.Duration)) {
	n := b.cfg.rounds
	warm := max(b.cfg.warmup/time.Duration(n), 100*time.Millisecond)
	dur := b.cfg.duration / time.Duration(n)
	for round := range n {
		for i := range targets {
			if ctx.Err() != nil {
				return
			}
			fn(targets[(i+round)%len(targets)], round, warm, dur)
		}
	}
}

// profile starts a CPU profile of cortex over dur after warm, when
// -cpuprofile is set, scenario is -profile-scenario, t is cortex and
// chosen holds; the returned function waits for the profile to be written.
func (b *bench) profile(ctx context.Context, scenario string, t *target, chosen bool, warm, dur time.Duration) (wait func()) {
	var wg sync.WaitGroup
	if b.cfg.cpuProfile != "" && b.cfg.profileScenario == scenario && t == b.st.gateway && chosen {
		wg.Go(func() {
			time.Sleep(warm)
			if err := t.proc.cpuProfile(ctx, http.DefaultClient, dur, b.cfg.cpuProfile); err != nil {
				b.progress("cpu profile: %v", err)
			}
		})
	}
	return wg.Wait
}

// closed runs the closed-loop cells: every concurrency, every target.
func (b *bench) closed(ctx context.Context) {
	spec := bodySpec{model: modelFast, maxTokens: fastTokens}
	top := slices.Max(b.cfg.concurrency)
	for _, conc := range b.cfg.concurrency {
		res := make(map[string]*closedResult)
		b.progress("closed loop, concurrency %d", conc)
		b.interleave(ctx, b.st.targets(), func(t *target, round int, warm, dur time.Duration) {
			stop := b.profile(ctx, "closed", t, conc == top && round == 0, warm, dur)
			r := b.g.closedLoop(ctx, t, spec, conc, warm, dur)
			stop()
			if res[t.name] == nil {
				res[t.name] = r
			} else {
				res[t.name].merge(r)
			}
		})
		if ctx.Err() != nil {
			return
		}
		if conc == top {
			b.cortexRate = res[b.st.gateway.name].rate()
		}
		b.rep.addTable(b.closedTable(conc, res))
	}
}

// closedTable reports one concurrency of the closed loop.
func (b *bench) closedTable(conc int, res map[string]*closedResult) *table {
	t := &table{
		title: fmt.Sprintf("Closed loop, concurrency %d (non-streaming chat, %d output tokens)", conc, fastTokens),
		header: []string{"target", "req/s", "p50", "p99", "added p50", "added p99",
			"throughput vs chain", "added vs chain's (p50 / p99)", "gateway RSS", "errors"},
	}
	direct, chain := res[b.st.direct.name], res[b.st.chain.name]
	for _, tg := range b.st.targets() {
		r := res[tg.name]
		row := []string{tg.label, fmtRate(r.rate()), fmtMS(r.lat.p50), fmtMS(r.lat.p99), "-", "-", "-", "-", fmtMB(r.rss), r.errs.String()}
		b.rep.addMetric("closed", tg.name, conc, "requests_per_second", r.rate(), "1/s")
		b.rep.addLatency("closed", tg.name, conc, "latency_", r.lat)
		b.rep.addMetric("closed", tg.name, conc, "errors", float64(r.errs.count()), "")
		if r.rss > 0 {
			b.rep.addMetric("closed", tg.name, conc, "gateway_rss", float64(r.rss), "bytes")
		}
		if tg != b.st.direct {
			a50, a99 := r.lat.p50-direct.lat.p50, r.lat.p99-direct.lat.p99
			row[4], row[5] = fmtAdded(a50), fmtAdded(a99)
			b.rep.addMetric("closed", tg.name, conc, "added_p50", ms(a50), "ms")
			b.rep.addMetric("closed", tg.name, conc, "added_p99", ms(a99), "ms")
		}
		if chain.rate() > 0 {
			ratio := r.rate() / chain.rate()
			row[6] = fmtRatio(ratio)
			b.rep.addMetric("closed", tg.name, conc, "throughput_vs_chain", ratio, "ratio")
			if tg == b.st.gateway && conc == throughputConc {
				row[6] += fmt.Sprintf(" %s (>= %.2f)", verdict(ratio >= throughputTarget), throughputTarget)
			}
		}
		if tg == b.st.gateway {
			ca50, ca99 := chain.lat.p50-direct.lat.p50, chain.lat.p99-direct.lat.p99
			r50, has50, ok50 := addedRatio(r.lat.p50-direct.lat.p50, ca50, addedTarget)
			r99, has99, ok99 := addedRatio(r.lat.p99-direct.lat.p99, ca99, addedTarget)
			row[7] = ratioCell(r50, has50) + " / " + ratioCell(r99, has99)
			if slices.Contains(addedConcs, conc) {
				row[7] += fmt.Sprintf(" %s (<= %.1fx)", verdict(ok50 && ok99), addedTarget)
			}
			if has50 {
				b.rep.addMetric("closed", tg.name, conc, "added_p50_vs_chain", r50, "ratio")
			}
			if has99 {
				b.rep.addMetric("closed", tg.name, conc, "added_p99_vs_chain", r99, "ratio")
			}
		}
		t.add(row...)
	}
	t.note = "added: latency over direct to engine at the same percentile. throughput vs chain: req/s over the bare chain's."
	return t
}

// ratioCell formats an optional ratio.
func ratioCell(r float64, ok bool) string {
	if !ok {
		return "n/a"
	}
	return fmtRatio(r)
}

// open runs one open-loop cell per target at a fixed rate.
func (b *bench) open(ctx context.Context) {
	rate := b.cfg.rate
	how := "set by -rate"
	if rate == 0 {
		rate, how = 500, "default"
		if b.cortexRate > 0 {
			rate, how = max(b.cortexRate/3, 10), "a third of cortex's closed-loop throughput"
		}
	}
	spec := bodySpec{model: modelFast, maxTokens: fastTokens}
	t := &table{
		title:  fmt.Sprintf("Open loop at %s req/s (%s; non-streaming chat)", fmtRate(rate), how),
		header: []string{"target", "offered/s", "served/s", "p50", "p99", "added p50", "added p99", "errors", "dropped"},
		note:   "Latency counts from each request's scheduled start, so queueing behind a slow answer shows.",
	}
	b.progress("open loop at %.0f/s", rate)
	res := make(map[string]*openResult)
	b.interleave(ctx, b.st.targets(), func(tg *target, _ int, warm, dur time.Duration) {
		r := b.g.openLoop(ctx, tg, spec, rate, warm, dur)
		if res[tg.name] == nil {
			res[tg.name] = r
		} else {
			res[tg.name].merge(r)
		}
	})
	if ctx.Err() != nil {
		return
	}
	direct := res[b.st.direct.name]
	for _, tg := range b.st.targets() {
		r := res[tg.name]
		served := float64(r.completed) / r.dur.Seconds()
		row := []string{tg.label, fmtRate(r.offered), fmtRate(served), fmtMS(r.lat.p50), fmtMS(r.lat.p99), "-", "-",
			r.errs.String(), strconv.Itoa(r.dropped)}
		if tg != b.st.direct {
			row[5], row[6] = fmtAdded(r.lat.p50-direct.lat.p50), fmtAdded(r.lat.p99-direct.lat.p99)
		}
		t.add(row...)
		b.rep.addMetric("open", tg.name, 0, "offered_per_second", rate, "1/s")
		b.rep.addMetric("open", tg.name, 0, "served_per_second", served, "1/s")
		b.rep.addLatency("open", tg.name, 0, "latency_", r.lat)
		b.rep.addMetric("open", tg.name, 0, "errors", float64(r.errs.count()), "")
		b.rep.addMetric("open", tg.name, 0, "dropped", float64(r.dropped), "")
	}
	b.rep.addTable(t)
}

// stream runs the streaming cells: every streaming concurrency, every
// target, against the paced model.
func (b *bench) stream(ctx context.Context) {
	spec := bodySpec{model: modelStream, maxTokens: streamTokens, stream: true}
	top := slices.Max(b.cfg.streamConc)
	for _, conc := range b.cfg.streamConc {
		res := make(map[string]*streamResult)
		b.progress("streaming, concurrency %d", conc)
		b.interleave(ctx, b.st.targets(), func(t *target, round int, warm, dur time.Duration) {
			stop := b.profile(ctx, "stream", t, conc == top && round == 0, warm, dur)
			r := b.g.streamLoop(ctx, t, spec, conc, warm, dur, streamInterval/2)
			stop()
			if res[t.name] == nil {
				res[t.name] = r
			} else {
				res[t.name].merge(r)
			}
		})
		if ctx.Err() != nil {
			return
		}
		b.rep.addTable(b.streamTable(conc, res))
	}
}

// streamTable reports one concurrency of the streaming run.
func (b *bench) streamTable(conc int, res map[string]*streamResult) *table {
	t := &table{
		title: fmt.Sprintf("Streaming, concurrency %d (%d tokens paced %v apart)", conc, streamTokens, streamInterval),
		header: []string{"target", "streams", "TTFT p50", "TTFT p99", "TTFT added p50", "TTFT added p99",
			"gap p50", "gap p99", "gap added p50", "gap added p99", "chunks (client = engine)", "arrivals (median)", "errors"},
	}
	direct := res[b.st.direct.name]
	// The engine's chunk count: what the client reads straight from it.
	want := medianInt(direct.chunks)
	wantArrivals := medianInt(direct.groups)
	for _, tg := range b.st.targets() {
		r := res[tg.name]
		chunksOK := r.completed > 0 && slices.Min(r.chunks) == want && slices.Max(r.chunks) == want
		arrivals := medianInt(r.groups)
		row := []string{tg.label, strconv.Itoa(r.completed), fmtMS(r.ttft.p50), fmtMS(r.ttft.p99), "-", "-",
			fmtMS(r.gap.p50), fmtMS(r.gap.p99), "-", "-",
			chunkCell(r.chunks, want, chunksOK), fmt.Sprintf("%d / %d %s", arrivals, wantArrivals, okFail(notBatched(arrivals, wantArrivals))),
			r.errs.String()}
		if tg != b.st.direct {
			t50, t99 := r.ttft.p50-direct.ttft.p50, r.ttft.p99-direct.ttft.p99
			row[4], row[5] = fmtAdded(t50), fmtAdded(t99)
			if tg == b.st.gateway {
				row[4] += fmt.Sprintf(" %s (<= %v)", verdict(t50 <= ttftTarget), ttftTarget)
			}
			row[8], row[9] = fmtAdded(r.gap.p50-direct.gap.p50), fmtAdded(r.gap.p99-direct.gap.p99)
			b.rep.addMetric("stream", tg.name, conc, "ttft_added_p50", ms(t50), "ms")
			b.rep.addMetric("stream", tg.name, conc, "ttft_added_p99", ms(t99), "ms")
		}
		t.add(row...)
		b.rep.addMetric("stream", tg.name, conc, "streams", float64(r.completed), "")
		b.rep.addLatency("stream", tg.name, conc, "ttft_", r.ttft)
		b.rep.addLatency("stream", tg.name, conc, "gap_", r.gap)
		b.rep.addMetric("stream", tg.name, conc, "chunks_ok", boolValue(chunksOK), "bool")
		b.rep.addMetric("stream", tg.name, conc, "arrivals_median", float64(arrivals), "")
		b.rep.addMetric("stream", tg.name, conc, "errors", float64(r.errs.count()), "")
	}
	t.note = "TTFT: request to the first data event. gap: between consecutive data events. " +
		"chunks: every stream's data events ([DONE] included) against the engine's (read direct). " +
		fmt.Sprintf("arrivals: chunks more than %v apart count apart; a relay that batches chunks makes fewer (OK: at least %.0f%% of direct's).", streamInterval/2, batchTolerance*100)
	return t
}

// notBatched reports whether a relay's median arrivals per stream are at
// least batchTolerance of the engine's (read direct). Scheduling on a busy
// machine merges an arrival now and then on any path; a relay that batches
// chunks (buffering to a size or an interval) merges most of them.
func notBatched(arrivals, engine int) bool {
	return float64(arrivals) >= batchTolerance*float64(engine)
}

// batchTolerance is the share of the engine's arrivals a relay must keep.
const batchTolerance = 0.75

// chunkCell shows the chunk counts of a target against the engine's.
func chunkCell(chunks []int, want int, ok bool) string {
	if len(chunks) == 0 {
		return "none FAIL"
	}
	lo, hi := slices.Min(chunks), slices.Max(chunks)
	got := strconv.Itoa(lo)
	if lo != hi {
		got = fmt.Sprintf("%d..%d", lo, hi)
	}
	return fmt.Sprintf("%s / %d %s", got, want, okFail(ok))
}

func okFail(ok bool) string {
	if ok {
		return "OK"
	}
	return "FAIL"
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// openStreams holds -streams streams open at once through the bare chain
// and through cortex, twice, and reports the gateway's memory and
// goroutines.
func (b *bench) openStreams(ctx context.Context) {
	n := b.cfg.streams
	t := &table{
		title: fmt.Sprintf("%d concurrent open streams (%d tokens paced %v apart)", n, b.cfg.slowTokens, slowInterval),
		header: []string{"target", "opened", "served", "gateway RSS (all open)", "gateway peak RSS",
			"goroutines before", "goroutines (all open)", "goroutines after", "errors"},
		note: fmt.Sprintf("Two rounds per target; the first fills the connection pools. before: after round 1, "+
			"after: after round 2, once the client closed its idle connections. RSS target <= %s, goroutines after <= before + %d.",
			fmtMB(rssTarget), goroutineSlack),
	}
	for _, tg := range []*target{b.st.chain, b.st.gateway} {
		var r1, r2 *holdResult
		for round := 1; round <= 2; round++ {
			b.progress("%d open streams, %s, round %d", n, tg.label, round)
			var heap string
			if round == 2 && tg == b.st.gateway {
				heap = b.cfg.heapProfile
			}
			r := b.holdStreams(ctx, tg, n, heap)
			if ctx.Err() != nil {
				return
			}
			if round == 1 {
				r1 = r
			} else {
				r2 = r
			}
		}
		mem, _ := tg.proc.memory()
		rssOK := r2.rss > 0 && r2.rss <= rssTarget
		gorOK := r1.after >= 0 && r2.after >= 0 && r2.after <= r1.after+goroutineSlack
		rssCell, gorCell := fmtMB(r2.rss), strconv.Itoa(r2.after)
		if tg == b.st.gateway {
			rssCell += " " + verdict(rssOK)
			gorCell += " " + verdict(gorOK)
		}
		t.add(tg.label, fmt.Sprintf("%d/%d", r2.opened, n), fmt.Sprintf("%d/%d", r2.served, n), rssCell, fmtMB(mem.peak),
			strconv.Itoa(r1.after), strconv.Itoa(r2.during), gorCell, r2.errs.String())
		b.rep.addMetric("streams", tg.name, n, "gateway_rss_open", float64(r2.rss), "bytes")
		b.rep.addMetric("streams", tg.name, n, "gateway_rss_peak", float64(mem.peak), "bytes")
		b.rep.addMetric("streams", tg.name, n, "goroutines_before", float64(r1.after), "")
		b.rep.addMetric("streams", tg.name, n, "goroutines_open", float64(r2.during), "")
		b.rep.addMetric("streams", tg.name, n, "goroutines_after", float64(r2.after), "")
		b.rep.addMetric("streams", tg.name, n, "served", float64(r2.served), "")
	}
	b.rep.addTable(t)
}

// openTimeout bounds the wait for every stream of a round to open (or
// fail).
const openTimeout = 30 * time.Second

// holdResult is one round of open streams.
type holdResult struct {
	opened, served int
	rss            uint64 // once every stream was open (or failed)
	during         int    // goroutines then; -1 unknown
	after          int    // goroutines once settled; -1 unknown
	errs           errCount
}

// holdStreams opens n slow streams at once through tg, samples the
// gateway once all are open, waits for them to end, closes the client's
// idle connections and waits (up to 10 s) for the gateway's goroutines to
// stop falling. With heapProfile set, it writes a heap profile of the
// gateway there while the streams are open.
func (b *bench) holdStreams(ctx context.Context, tg *target, n int, heapProfile string) *holdResult {
	res := &holdResult{}
	spec := bodySpec{model: modelSlow, maxTokens: b.cfg.slowTokens, stream: true}
	var (
		wg       sync.WaitGroup
		opened   atomic.Int64
		settled  atomic.Int64 // opened or failed
		allReady = make(chan struct{})
		served   atomic.Int64
	)
	mark := func() {
		if settled.Add(1) == int64(n) {
			close(allReady)
		}
	}
	for range n {
		wg.Go(func() {
			body := spec.appendBody(nil, b.g.seq.Add(1))
			var once sync.Once
			open := func() { once.Do(func() { opened.Add(1); mark() }) }
			_, err := b.g.streamOnce(ctx, tg, body, slowInterval/2, open)
			if err != nil {
				res.errs.add(err)
				once.Do(mark)
				return
			}
			served.Add(1)
		})
	}
	select {
	case <-allReady:
	case <-ctx.Done():
	case <-time.After(openTimeout):
		b.progress("not every stream opened within %v", openTimeout)
	}
	res.opened = int(opened.Load())
	res.rss = tg.rss()
	res.during = b.goroutines(ctx, tg)
	if heapProfile != "" {
		if err := tg.proc.heapProfile(ctx, http.DefaultClient, heapProfile); err != nil {
			b.progress("heap profile: %v", err)
		}
	}
	wg.Wait()
	res.served = int(served.Load())
	b.g.transport.CloseIdleConnections()
	res.after = b.settleGoroutines(ctx, tg)
	return res
}

// goroutines returns the gateway's goroutines, -1 when unknown.
func (b *bench) goroutines(ctx context.Context, tg *target) int {
	n, err := tg.proc.goroutines(ctx, http.DefaultClient)
	if err != nil {
		return -1
	}
	return n
}

// settleGoroutines polls the gateway's goroutines until they stop falling
// (the same count 3 polls in a row, 100 ms apart) or 10 s pass, and
// returns the last count.
func (b *bench) settleGoroutines(ctx context.Context, tg *target) int {
	deadline := time.Now().Add(10 * time.Second)
	last, same := b.goroutines(ctx, tg), 0
	for same < 3 && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(100 * time.Millisecond)
		n := b.goroutines(ctx, tg)
		if n == last {
			same++
		} else {
			same = 0
		}
		last = n
	}
	return last
}

// coldLoad sends -cold concurrent requests through cortex for a model that
// is not loaded, and counts the loads at the neuron and at the engine.
func (b *bench) coldLoad(ctx context.Context) {
	n := b.cfg.cold
	tg := b.st.gateway
	b.progress("%d concurrent requests for a cold model, %s", n, tg.label)
	spec := bodySpec{model: modelCold, maxTokens: fastTokens}
	callsBefore := b.st.loadCalls.Load()
	loadsBefore := b.st.engineLoads(modelCold)
	var (
		wg    sync.WaitGroup
		ok    atomic.Int64
		errs  errCount
		start = make(chan struct{})
		lat   = make([]time.Duration, n)
	)
	for i := range n {
		wg.Go(func() {
			body := spec.appendBody(nil, b.g.seq.Add(1))
			<-start
			t0 := time.Now()
			if err := b.g.do(ctx, tg, body); err != nil {
				errs.add(err)
				return
			}
			lat[i] = time.Since(t0)
			ok.Add(1)
		})
	}
	close(start)
	wg.Wait()
	calls := b.st.loadCalls.Load() - callsBefore
	loads := b.st.engineLoads(modelCold) - loadsBefore
	s := summarize(slices.DeleteFunc(lat, func(d time.Duration) bool { return d == 0 }))
	pass := calls == 1 && loads == 1 && int(ok.Load()) == n
	t := &table{
		title:  fmt.Sprintf("%d concurrent requests for a cold model (load time %v)", n, coldLoadTime),
		header: []string{"target", "served", "load requests at the neuron", "engine loads", "p50", "p99", "errors", "verdict"},
		note:   "Target: exactly 1 load, every request served.",
	}
	t.add(tg.label, fmt.Sprintf("%d/%d", ok.Load(), n), strconv.FormatInt(calls, 10), strconv.Itoa(loads),
		fmtMS(s.p50), fmtMS(s.p99), errs.String(), verdict(pass))
	b.rep.addTable(t)
	b.rep.addMetric("cold", tg.name, n, "served", float64(ok.Load()), "")
	b.rep.addMetric("cold", tg.name, n, "neuron_load_requests", float64(calls), "")
	b.rep.addMetric("cold", tg.name, n, "engine_loads", float64(loads), "")
	b.rep.addLatency("cold", tg.name, n, "latency_", s)
}
