package main

import (
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/helexa-ai/helexa-go/bench/internal/benchenv"
	"github.com/helexa-ai/helexa-go/cortex/route"
)

// workloadResults are the cells of one workload.
type workloadResults struct {
	w        *workload
	capacity float64 // requests/s, the estimate the loads multiply
	results  []*result
}

// report collects a run's cells and checks.
type report struct {
	header             []string
	loadStart, loadEnd string
	elapsed, cpu       time.Duration
	workloads          []*workloadResults
	one, three, hot    *result       // the checks; nil when not run
	burst              []*result     // the burst's cells, in burstSetups order
	burstCapacity      float64       // one replica's capacity estimate of the burst
	burstTiming        timing        // of the scaling cell
	fixedTiming        timing        // of the burst's fixed cells
	poll               time.Duration // the gateways' poll interval
}

// find returns the cell of workload name at load under policy, or nil.
func (r *report) find(name string, load float64, policy string) *result {
	for _, ws := range r.workloads {
		if ws.w.name != name {
			continue
		}
		for _, res := range ws.results {
			if res.load == load && res.policy == policy {
				return res
			}
		}
	}
	return nil
}

// topLoad returns the highest load workload name ran at; 0 when none.
func (r *report) topLoad(name string) float64 {
	top := 0.0
	for _, ws := range r.workloads {
		if ws.w.name == name {
			for _, res := range ws.results {
				top = max(top, res.load)
			}
		}
	}
	return top
}

// loadsOf returns the loads workload name ran at, ascending.
func (r *report) loadsOf(name string) []float64 {
	var out []float64
	for _, ws := range r.workloads {
		if ws.w.name == name {
			for _, res := range ws.results {
				if !slices.Contains(out, res.load) {
					out = append(out, res.load)
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

// check is one target with its verdict.
type check struct {
	target, got string
	ok          bool
}

// checks evaluates the targets whose cells ran.
func (r *report) checks() []check {
	var out []check
	for _, name := range []string{"tenants", "sessions"} {
		top := r.topLoad(name)
		ll, pa := r.find(name, top, policyLL), r.find(name, top, policyPrefix)
		if ll == nil || pa == nil {
			continue
		}
		tok := ratio(pa.tokRate, ll.tokRate)
		out = append(out, check{
			target: fmt.Sprintf("%s at %gx: prefix-aware output tok/s ≥ 2× least-loaded's", pa.w.label, top),
			got:    fmt.Sprintf("%s vs %s tok/s: %s", fmtRate(pa.tokRate), fmtRate(ll.tokRate), fmtRatio(tok)),
			ok:     tok >= 2,
		})
		m := ratio(ll.meanTTFT().Seconds(), pa.meanTTFT().Seconds())
		out = append(out, check{
			target: fmt.Sprintf("%s at %gx: prefix-aware mean TTFT ≤ 1/5 of least-loaded's", pa.w.label, top),
			got:    fmt.Sprintf("%s vs %s%s: %s lower", fmtDur(pa.meanTTFT()), bound(ll), fmtDur(ll.meanTTFT()), fmtRatio(m)),
			ok:     m >= 5,
		})
	}
	for _, load := range r.loadsOf("unique") {
		ll, pa := r.find("unique", load, policyLL), r.find("unique", load, policyPrefix)
		if ll == nil || pa == nil {
			continue
		}
		tok := ratio(pa.tokRate, ll.tokRate)
		out = append(out, check{
			target: fmt.Sprintf("%s at %gx: prefix-aware output tok/s ≥ 95%% of least-loaded's", pa.w.label, load),
			got:    fmt.Sprintf("%s vs %s tok/s: %s", fmtRate(pa.tokRate), fmtRate(ll.tokRate), fmtRatio(tok)),
			ok:     tok >= 0.95,
		})
		p99 := ratio(benchenv.Percentile(pa.ttft, 99).Seconds(), benchenv.Percentile(ll.ttft, 99).Seconds())
		out = append(out, check{
			target: fmt.Sprintf("%s at %gx: prefix-aware p99 TTFT ≤ 105%% of least-loaded's", pa.w.label, load),
			got:    fmt.Sprintf("%s vs %s: %s", fmtDur(benchenv.Percentile(pa.ttft, 99)), fmtDur(benchenv.Percentile(ll.ttft, 99)), fmtRatio(p99)),
			ok:     p99 <= 1.05,
		})
	}
	if len(r.burst) > 0 {
		cells := map[string]*result{}
		for _, b := range r.burst {
			cells[b.scale.name] = b
		}
		out = append(out, burstChecks(cells, r.poll)...)
	}
	if h := r.hot; h != nil {
		out = append(out, check{
			target: "hot prefix: busiest neuron ≤ 1.3× the mean load",
			got:    fmtRatio(h.loadRatio),
			ok:     h.loadRatio > 0 && h.loadRatio <= 1.3,
		})
	}
	if r.one != nil && r.three != nil {
		d := 100 * (r.three.hitRatio() - r.one.hitRatio())
		out = append(out, check{
			target: "3 gateways: hit ratio at most 5 points below 1 gateway's",
			got:    fmt.Sprintf("%s vs %s: %+.1f points", fmtPct(r.three.hitRatio()), fmtPct(r.one.hitRatio()), d),
			ok:     d >= -5,
		})
	}
	return out
}

// ratio is a/b, NaN when b is not positive.
func ratio(a, b float64) float64 {
	if !(b > 0) {
		return math.NaN()
	}
	return a / b
}

// bound is "≥ " when r's TTFTs include lower bounds.
func bound(r *result) string {
	if r.cut > 0 {
		return "≥ "
	}
	return ""
}

// cellRow is the table row of r.
func cellRow(r *result) []string {
	b := bound(r)
	p99 := benchenv.Percentile(r.ttft, 99)
	p99b := ""
	if r.cut > 0 && len(r.ttft)-r.cut < int(math.Ceil(0.99*float64(len(r.ttft)))) {
		p99b = "≥ "
	}
	p50b := ""
	if r.cut > 0 && len(r.ttft)-r.cut < int(math.Ceil(0.5*float64(len(r.ttft)))) {
		p50b = "≥ "
	}
	errs := strconv.Itoa(r.failed)
	if r.failed > 0 {
		errs += " (" + r.firstErr + ")"
	}
	return []string{fmt.Sprintf("%gx (%s/s)", r.load, fmtRate(r.rate)), r.policy, strconv.Itoa(r.requests),
		p50b + fmtDur(benchenv.Percentile(r.ttft, 50)), p99b + fmtDur(p99), b + fmtDur(r.meanTTFT()), strconv.Itoa(r.cut),
		fmtRate(r.reqRate), fmtRate(r.tokRate), fmtPct(r.hitRatio()), fmtRatio(r.loadRatio), errs}
}

var cellHeader = []string{"offered", "policy", "requests", "TTFT p50", "TTFT p99", "TTFT mean", "cut",
	"req/s", "out tok/s", "hit ratio", "busiest/mean", "errors"}

// markdown writes the report.
func (r *report) markdown(w io.Writer) error {
	var b strings.Builder
	b.WriteString("## helexa-go fleet benchmark: routing for the prefix cache\n\n")
	for _, h := range r.header {
		b.WriteString("- " + h + "\n")
	}
	fmt.Fprintf(&b, "- load average (1 min): %s at the start, %s at the end; above the core count, other processes competed for the CPU\n", r.loadStart, r.loadEnd)
	fmt.Fprintf(&b, "- run time: %v; CPU time of this process: %v (%.0f%% of one core)\n\n", r.elapsed.Round(time.Second),
		r.cpu.Round(100*time.Millisecond), 100*r.cpu.Seconds()/r.elapsed.Seconds())
	for _, ws := range r.workloads {
		t := &table{title: fmt.Sprintf("%s (capacity estimate without a cache: %s req/s)", ws.w.label, fmtRate(ws.capacity)), header: cellHeader}
		for _, res := range ws.results {
			t.add(cellRow(res)...)
		}
		t.note = "TTFT from the scheduled arrival; ≥: includes requests without a first token by the cutoff, counted at the cutoff (cut)."
		t.write(&b)
	}
	if r.one != nil || r.three != nil || r.hot != nil {
		t := &table{title: "Checks: (a) at its highest load, prefix-aware", header: append([]string{"check"}, cellHeader...)}
		for _, c := range []struct {
			name string
			r    *result
		}{{"1 gateway", r.one}, {"3 gateways", r.three}, {"hot prefix", r.hot}} {
			if c.r != nil {
				t.add(append([]string{c.name}, cellRow(c.r)...)...)
			}
		}
		t.write(&b)
	}
	if len(r.burst) > 0 {
		t := &table{title: fmt.Sprintf("Burst: %s at %gx one replica's capacity estimate (%s req/s), least-loaded", r.burst[0].w.label, burstLoad, fmtRate(r.burstCapacity)),
			header: append([]string{"replicas (min-max, preloaded)", "window"}, cellHeader...)}
		for _, b := range r.burst {
			win := fmt.Sprintf("%v to %v", r.fixedTiming.warmup, r.fixedTiming.duration)
			if b.scale.min != b.scale.max {
				win = fmt.Sprintf("%v to %v", r.burstTiming.warmup, r.burstTiming.duration)
			}
			t.add(append([]string{fmt.Sprintf("%s (%d-%d, %d)", b.scale.name, b.scale.min, b.scale.max, b.scale.preload), win}, cellRow(b)...)...)
		}
		t.note = fmt.Sprintf("Scaler: route.NewScaler(WithTargetWork(%g), WithScaleWindow(%v), WithScaleCooldown(%v)); the gateway's scale step every %v; loads take %v; poll interval %v.",
			float64(burstTargetWork), time.Duration(burstWindow), burstCooldown, route.DefaultPollInterval, burstLoadTime, r.poll)
		for _, b := range r.burst {
			if b.scale.min == b.scale.max {
				continue
			}
			t.note += fmt.Sprintf("\n\nReplicas over time (%s; ready+loading, as the gateway sees them, sampled every %v from the first arrival): %s. Ramp ends at %v.",
				b.scale.name, burstSample, fmtSteps(b.replicas), rampEnd(b.replicas).Round(10*time.Millisecond))
		}
		t.write(&b)
	}
	t := &table{title: "Targets", header: []string{"target", "measured", "verdict"}}
	for _, c := range r.checks() {
		t.add(c.target, c.got, verdict(c.ok))
	}
	t.write(&b)
	_, err := io.WriteString(w, b.String())
	return err
}

// csv writes one line per cell.
func (r *report) csv(w io.Writer) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"workload", "load", "rate", "policy", "gateways", "requests", "ttft_p50_ms", "ttft_p99_ms",
		"ttft_mean_ms", "cut", "req_per_s", "tok_per_s", "hit_ratio", "busiest_over_mean", "errors"})
	var all []*result
	for _, ws := range r.workloads {
		all = append(all, ws.results...)
	}
	for _, x := range []*result{r.three, r.hot} {
		if x != nil {
			all = append(all, x)
		}
	}
	all = append(all, r.burst...)
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', 6, 64) }
	ms := func(d time.Duration) string { return f(float64(d) / float64(time.Millisecond)) }
	for _, x := range all {
		name := x.w.name
		if x.scale != nil {
			name = "burst " + x.scale.name
		}
		_ = cw.Write([]string{name, f(x.load), f(x.rate), x.policy, strconv.Itoa(x.gateways), strconv.Itoa(x.requests),
			ms(benchenv.Percentile(x.ttft, 50)), ms(benchenv.Percentile(x.ttft, 99)), ms(x.meanTTFT()), strconv.Itoa(x.cut), f(x.reqRate), f(x.tokRate),
			f(x.hitRatio()), f(x.loadRatio), strconv.Itoa(x.failed)})
	}
	cw.Flush()
	return cw.Error()
}

// table is one Markdown table.
type table struct {
	title, note string
	header      []string
	rows        [][]string
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

// write writes t with its columns padded to line up.
func (t *table) write(b *strings.Builder) {
	width := make([]int, len(t.header))
	for i, h := range t.header {
		width[i] = max(runeLen(h), 3)
	}
	for _, r := range t.rows {
		for i := range min(len(r), len(width)) {
			r[i] = strings.ReplaceAll(r[i], "|", `\|`)
			width[i] = max(width[i], runeLen(r[i]))
		}
	}
	line := func(cells []string, pad string) {
		b.WriteString("|")
		for i, wd := range width {
			c := ""
			if i < len(cells) {
				c = cells[i]
			}
			b.WriteString(" " + c + strings.Repeat(pad, wd-runeLen(c)) + " |")
		}
		b.WriteString("\n")
	}
	if t.title != "" {
		b.WriteString("### " + t.title + "\n\n")
	}
	line(t.header, " ")
	sep := make([]string, len(width))
	for i, wd := range width {
		sep[i] = strings.Repeat("-", wd)
	}
	line(sep, "-")
	for _, r := range t.rows {
		line(r, " ")
	}
	if t.note != "" {
		b.WriteString("\n" + t.note + "\n")
	}
	b.WriteString("\n")
}

func runeLen(s string) int { return len([]rune(s)) }

func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

// fmtDur formats d in milliseconds below 10 s, else in seconds.
func fmtDur(d time.Duration) string {
	if d < 10*time.Second {
		return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 0, 64) + " ms"
	}
	return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + " s"
}

func fmtRate(r float64) string {
	if r >= 100 {
		return strconv.FormatFloat(r, 'f', 0, 64)
	}
	return strconv.FormatFloat(r, 'f', 1, 64)
}

func fmtRatio(r float64) string {
	if math.IsNaN(r) {
		return "-"
	}
	return strconv.FormatFloat(r, 'f', 2, 64) + "x"
}

func fmtPct(r float64) string {
	if math.IsNaN(r) {
		return "-"
	}
	return strconv.FormatFloat(100*r, 'f', 1, 64) + "%"
}

// cpuTime is the user and system CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
