package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/helexa-ai/helexa-go/cortex/route"
)

// Policies, in table order.
const (
	policyRR     = "round-robin"
	policyLL     = "least-loaded"
	policyPrefix = "prefix-aware"
)

var policyNames = []string{policyRR, policyLL, policyPrefix}

// newRouter returns a fresh Router of the policy; a is prefix-aware's
// affinity.
func newRouter(policy string, a route.PrefixAffinity) (route.Router, error) {
	switch policy {
	case policyRR:
		fb, err := route.NewRouter()
		return &roundRobin{fallback: fb}, err
	case policyLL:
		return route.NewRouter()
	case policyPrefix:
		return route.NewRouter(route.WithPrefixAffinity(a))
	}
	return nil, fmt.Errorf("unknown policy %q", policy)
}

// cell is one measurement: a workload at an offered rate under a policy,
// through some gateways, on a fresh fleet.
type cell struct {
	w        *workload
	load     float64 // offered rate as a multiple of the capacity estimate
	rate     float64 // offered requests/s
	policy   string
	gateways int
	seed     uint64
	scale    *scaling // the burst's cells; nil for the others
}

// result is what a cell measured over its window.
type result struct {
	cell
	requests  int             // scheduled in the window
	ttft      []time.Duration // sorted; lower bounds included
	cut       int             // requests without a first token by the cutoff
	failed    int             // requests answered with an error
	firstErr  string
	reqRate   float64 // requests completed in the window, per second
	tokRate   float64 // output tokens received in the window, per second
	prompt    int64   // Σ prompt_tokens of the usage chunks
	cached    int64   // Σ cached_tokens
	loadRatio float64 // busiest neuron's mean in-flight / the mean of all
	loadMean  float64
	replicas  []replicaSample // the burst's cells: the first gateway's view, sampled
}

func (r *result) hitRatio() float64 {
	if r.prompt == 0 {
		return math.NaN()
	}
	return float64(r.cached) / float64(r.prompt)
}

func (r *result) meanTTFT() time.Duration {
	if len(r.ttft) == 0 {
		return 0
	}
	var sum time.Duration
	for _, d := range r.ttft {
		sum += d
	}
	return sum / time.Duration(len(r.ttft))
}

// record is one request of a cell.
type record struct {
	sched         time.Duration // arrival, from the cell's start
	first         time.Duration // first content chunk; 0 for none
	ok            bool          // ended with its usage chunk
	failed        bool
	err           string
	prompt        int
	cached        int
	completion    int
	contentChunks int
}

// timing is the schedule of a cell, from its start.
type timing struct {
	warmup, duration, drain time.Duration
}

// runCell starts a fresh fleet, offers c's load for t.duration, measures
// over [t.warmup, t.duration), cuts what is left at t.duration+t.drain,
// and stops the fleet.
func runCell(ctx context.Context, c cell, cfg config, t timing) (*result, error) {
	routers := make([]route.Router, c.gateways)
	for i := range routers {
		r, err := newRouter(c.policy, cfg.affinity)
		if err != nil {
			return nil, err
		}
		routers[i] = r
	}
	f, err := startFleet(ctx, cfg.neurons, cfg.gpu, cfg.poll, routers, c.scale)
	if err != nil {
		return nil, err
	}
	defer f.close()
	tr := &http.Transport{MaxIdleConnsPerHost: 4096, DisableCompression: true, IdleConnTimeout: 10 * time.Second}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}

	src := c.w.newSource(c.seed)
	if p, ok := src.(prewarmer); ok {
		never := func() bool { return false }
		var unused atomic.Int64
		p.prewarm(ctx, func(msgs []message) (string, bool) {
			var rec record
			a := exchange(ctx, client, f.urls[0]+"/v1/chat/completions", c.w.maxTokens, msgs, &rec, time.Now(), never, &unused, &unused)
			return a, rec.ok
		})
	}
	rng := rand.New(rand.NewPCG(c.seed, 7))
	start := time.Now()
	cutoff := t.duration + t.drain
	cctx, cancel := context.WithDeadline(ctx, start.Add(cutoff))
	defer cancel()

	var tokens, completed atomic.Int64
	inWindow := func() bool {
		e := time.Since(start)
		return e >= t.warmup && e < t.duration
	}
	var loadSums []float64
	samples := 0
	sampled := make(chan struct{})
	go func() { // the in-flight sampler
		defer close(sampled)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		var cur []int
		for {
			select {
			case <-cctx.Done():
				return
			case <-tick.C:
			}
			if e := time.Since(start); e >= t.duration {
				return
			} else if e < t.warmup {
				continue
			}
			cur = f.inFlight(cctx, cur)
			if loadSums == nil {
				loadSums = make([]float64, len(cur))
			}
			for i, v := range cur {
				loadSums[i] += float64(v)
			}
			samples++
		}
	}()

	var replicas []replicaSample
	replicasDone := make(chan struct{})
	if c.scale == nil {
		close(replicasDone)
	} else {
		go func() { // the replica sampler, over the whole cell
			defer close(replicasDone)
			replicas = sampleReplicas(cctx, f.gateways[0], start)
		}()
	}

	var wg sync.WaitGroup
	var recs []*record
	var at time.Duration
	for i := 0; ; i++ {
		at += time.Duration(rng.ExpFloat64() / c.rate * float64(time.Second))
		if at >= t.duration {
			break
		}
		if d := time.Until(start.Add(at)); d > 0 {
			select {
			case <-time.After(d):
			case <-cctx.Done():
			}
		}
		if cctx.Err() != nil {
			break
		}
		rec := &record{sched: at}
		recs = append(recs, rec)
		url := f.urls[i%len(f.urls)] + "/v1/chat/completions"
		wg.Go(func() {
			send(cctx, client, url, c.w.maxTokens, src, rec, start, inWindow, &tokens, &completed)
		})
	}
	<-cctx.Done()
	wg.Wait()
	<-sampled
	<-replicasDone
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	res := &result{cell: c, replicas: replicas}
	window := (t.duration - t.warmup).Seconds()
	res.tokRate = float64(tokens.Load()) / window
	res.reqRate = float64(completed.Load()) / window
	for _, r := range recs {
		if r.sched < t.warmup {
			continue
		}
		res.requests++
		switch {
		case r.failed:
			res.failed++
			if res.firstErr == "" {
				res.firstErr = r.err
			}
			continue
		case r.first > 0:
			res.ttft = append(res.ttft, r.first-r.sched)
		default:
			res.cut++
			res.ttft = append(res.ttft, cutoff-r.sched)
		}
		if r.ok {
			res.prompt += int64(r.prompt)
			res.cached += int64(r.cached)
		}
	}
	slices.Sort(res.ttft)
	if samples > 0 {
		var sum, most float64
		for _, s := range loadSums {
			sum += s
			most = max(most, s)
		}
		if sum > 0 {
			res.loadRatio = most / (sum / float64(len(loadSums)))
		}
		res.loadMean = sum / float64(len(loadSums)) / float64(samples)
	}
	return res, nil
}

// chunk is what the bench reads of a streamed chat completion chunk.
type chunk struct {
	Choices []struct {
		Delta struct {
			Content string `json:"content"`
		} `json:"delta"`
	} `json:"choices"`
	Usage *struct {
		PromptTokens        int `json:"prompt_tokens"`
		CompletionTokens    int `json:"completion_tokens"`
		PromptTokensDetails *struct {
			CachedTokens int `json:"cached_tokens"`
		} `json:"prompt_tokens_details"`
	} `json:"usage"`
}

// prewarmer is a source whose requests continue earlier ones, started
// before the cell's arrivals (conversations under way).
type prewarmer interface {
	// prewarm sends each conversation's first turn with do, all at once,
	// and returns when they have all ended.
	prewarm(ctx context.Context, do func(msgs []message) (answer string, ok bool))
}

// send sends one request of src and records it in rec.
func send(ctx context.Context, client *http.Client, url string, maxTokens int, src source,
	rec *record, start time.Time, inWindow func() bool, tokens, completed *atomic.Int64) {
	msgs, release, err := src.acquire(ctx)
	if err != nil {
		return // cut: the cell ended before a session was idle
	}
	answer := exchange(ctx, client, url, maxTokens, msgs, rec, start, inWindow, tokens, completed)
	release(answer, rec.ok)
}

// exchange sends one streamed chat completion of msgs, records it in rec
// and returns the answer's text. Each content chunk is one token (the sim
// sends one per decode step); those received while inWindow count in
// tokens, and the request in completed when it ends in the window.
func exchange(ctx context.Context, client *http.Client, url string, maxTokens int, msgs []message,
	rec *record, start time.Time, inWindow func() bool, tokens, completed *atomic.Int64) string {
	var answer strings.Builder
	body, err := json.Marshal(map[string]any{
		"model": modelID, "messages": msgs, "max_tokens": maxTokens,
		// Every answer runs to max_tokens, as the workloads say: the sim
		// would otherwise end some earlier, as a model does at its end of
		// sequence (vLLM and llama-server take ignore_eos too).
		"ignore_eos": true,
		"stream":     true, "stream_options": map[string]bool{"include_usage": true},
	})
	if err != nil {
		rec.failed, rec.err = true, err.Error()
		return ""
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		rec.failed, rec.err = true, err.Error()
		return ""
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			rec.failed, rec.err = true, err.Error()
		}
		return ""
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		rec.failed, rec.err = true, fmt.Sprintf("%d %s", resp.StatusCode, bytes.TrimSpace(b))
		return ""
	}
	br := bufio.NewReaderSize(resp.Body, 16<<10)
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return answer.String() // cut at the cutoff, or a broken stream: not ok
		}
		data, found := bytes.CutPrefix(line, []byte("data: "))
		if !found {
			continue
		}
		data = bytes.TrimSpace(data)
		if bytes.Equal(data, []byte("[DONE]")) {
			rec.ok = rec.completion > 0
			if rec.ok && inWindow() {
				completed.Add(1)
			}
			return answer.String()
		}
		var ch chunk
		if err := json.Unmarshal(data, &ch); err != nil {
			rec.failed, rec.err = true, "bad chunk: "+err.Error()
			return answer.String()
		}
		for _, c := range ch.Choices {
			if c.Delta.Content == "" {
				continue
			}
			if rec.first == 0 {
				rec.first = time.Since(start)
			}
			rec.contentChunks++
			answer.WriteString(c.Delta.Content)
			if inWindow() {
				tokens.Add(1)
			}
		}
		if u := ch.Usage; u != nil {
			rec.prompt, rec.completion = u.PromptTokens, u.CompletionTokens
			if d := u.PromptTokensDetails; d != nil {
				rec.cached = d.CachedTokens
			}
		}
	}
}
