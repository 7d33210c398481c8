package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// chatPath is the route every scenario drives.
const chatPath = "/v1/chat/completions"

// filler pads every prompt to a realistic size (about 300 bytes).
const filler = "Summarise the following notes in one short paragraph, keeping every number exact: " +
	"the fleet has four hosts, each with two accelerators; the gateway routes by least work; " +
	"budgets are reserved before routing and settled from the usage the engine reports."

// target is one way to reach the engine: directly, or through proxies.
type target struct {
	name  string // short name, for CSV and flags
	label string // for the tables
	url   string // base URL, "http://host:port"
	key   string // API key sent as a bearer token; "" for none
	proc  *child // the process of the gateway's first hop, for RSS; nil when not separate
}

// rss returns the resident memory of the target's gateway process, 0 when
// it has none or it cannot be read.
func (t *target) rss() uint64 {
	if t.proc == nil {
		return 0
	}
	m, _ := t.proc.memory()
	return m.rss
}

// bodySpec describes the requests of a run.
type bodySpec struct {
	model     string
	maxTokens int
	stream    bool
}

// appendBody appends a chat completion request with a prompt unique to id.
func (s bodySpec) appendBody(b []byte, id uint64) []byte {
	b = append(b, `{"model":"`...)
	b = append(b, s.model...)
	b = append(b, `","max_tokens":`...)
	b = strconv.AppendInt(b, int64(s.maxTokens), 10)
	if s.stream {
		b = append(b, `,"stream":true`...)
	}
	b = append(b, `,"messages":[{"role":"user","content":"Request `...)
	b = strconv.AppendUint(b, id, 10)
	b = append(b, ". "...)
	b = append(b, filler...)
	return append(b, `"}]}`...)
}

// loadGen sends requests through one shared, tuned transport. Prompts are
// unique across the whole run.
type loadGen struct {
	transport *http.Transport
	client    *http.Client
	seq       atomic.Uint64
}

// newLoadGen returns a load generator whose transport keeps up to maxIdle
// idle connections per host alive.
func newLoadGen(maxIdle int) *loadGen {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        0, // no limit over all hosts
		MaxIdleConnsPerHost: maxIdle,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	return &loadGen{transport: tr, client: &http.Client{Transport: tr}}
}

// newRequest builds a POST of body to t.
func (g *loadGen) newRequest(ctx context.Context, t *target, body []byte) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url+chatPath, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if t.key != "" {
		req.Header.Set("Authorization", "Bearer "+t.key)
	}
	return req, nil
}

// statusError is an answer other than 200.
type statusError struct {
	status int
	body   string
}

func (e *statusError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.status, e.body) }

// checkStatus returns a *statusError, with the start of the body, unless
// resp is a 200.
func checkStatus(resp *http.Response) error {
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
	return &statusError{status: resp.StatusCode, body: string(bytes.TrimSpace(b))}
}

// do sends one non-streaming request and reads the whole answer.
func (g *loadGen) do(ctx context.Context, t *target, body []byte) error {
	req, err := g.newRequest(ctx, t, body)
	if err != nil {
		return err
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := checkStatus(resp); err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	return err
}

// errCount counts failed requests and keeps the first error.
type errCount struct {
	mu    sync.Mutex
	n     int
	first error
}

func (e *errCount) add(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.n++
	if e.first == nil {
		e.first = err
	}
}

// String is "0", or the count and the first error.
func (e *errCount) String() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.n == 0 {
		return "0"
	}
	return fmt.Sprintf("%d (%v)", e.n, e.first)
}

// merge adds the failures of o.
func (e *errCount) merge(o *errCount) {
	o.mu.Lock()
	n, first := o.n, o.first
	o.mu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	e.n += n
	if e.first == nil {
		e.first = first
	}
}

// count returns the number of failures.
func (e *errCount) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.n
}

// closedResult is one closed-loop cell, or several merged.
type closedResult struct {
	completed int
	dur       time.Duration // the measured time
	samples   []time.Duration
	lat       summary // of samples
	errs      errCount
	rss       uint64 // the gateway's resident memory at the end; 0 unknown
}

// rate is the completed requests per second.
func (r *closedResult) rate() float64 {
	if r.dur <= 0 {
		return 0
	}
	return float64(r.completed) / r.dur.Seconds()
}

// merge adds o, a later run of the same cell, to r.
func (r *closedResult) merge(o *closedResult) {
	r.completed += o.completed
	r.dur += o.dur
	r.samples = append(r.samples, o.samples...)
	r.lat = summarize(r.samples)
	r.errs.merge(&o.errs)
	r.rss = o.rss
}

// closedLoop runs conc workers that each send a request, wait for the
// whole answer and send the next, for warm+dur. Requests that complete
// within the last dur count: their number gives the throughput and their
// latencies the distribution.
func (g *loadGen) closedLoop(ctx context.Context, t *target, spec bodySpec, conc int, warm, dur time.Duration) *closedResult {
	res := &closedResult{dur: dur}
	from := time.Now().Add(warm)
	end := from.Add(dur)
	samples := make([][]time.Duration, conc)
	var wg sync.WaitGroup
	for w := range conc {
		wg.Go(func() {
			buf := make([]byte, 0, 512)
			lat := make([]time.Duration, 0, 1024)
			for ctx.Err() == nil {
				buf = spec.appendBody(buf[:0], g.seq.Add(1))
				t0 := time.Now()
				if !t0.Before(end) {
					break
				}
				err := g.do(ctx, t, buf)
				t1 := time.Now()
				if t1.Before(from) || t1.After(end) {
					continue
				}
				if err != nil {
					res.errs.add(err)
					continue
				}
				lat = append(lat, t1.Sub(t0))
			}
			samples[w] = lat
		})
	}
	wg.Wait()
	res.samples = slices.Concat(samples...)
	res.completed = len(res.samples)
	res.lat = summarize(res.samples)
	res.rss = t.rss()
	return res
}

// openResult is one open-loop cell, or several merged.
type openResult struct {
	offered   float64 // requests per second scheduled
	completed int
	dur       time.Duration
	samples   []time.Duration
	lat       summary // from the scheduled start, so queueing counts
	errs      errCount
	dropped   int // not sent: too many requests already in flight
}

// merge adds o, a later run of the same cell, to r.
func (r *openResult) merge(o *openResult) {
	r.offered = o.offered
	r.completed += o.completed
	r.dur += o.dur
	r.samples = append(r.samples, o.samples...)
	r.lat = summarize(r.samples)
	r.errs.merge(&o.errs)
	r.dropped += o.dropped
}

// maxOpenInFlight bounds the requests an open-loop run keeps in flight;
// beyond it requests are dropped and counted rather than queued.
const maxOpenInFlight = 2048

// openLoop sends requests at a fixed rate for warm+dur, each on its own
// goroutine, whatever the answers' latency. A request's latency is
// measured from the time it was scheduled, so a stalled system is not
// flattered by sending less (no coordinated omission).
func (g *loadGen) openLoop(ctx context.Context, t *target, spec bodySpec, rate float64, warm, dur time.Duration) *openResult {
	res := &openResult{offered: rate, dur: dur}
	interval := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	from := start.Add(warm)
	end := from.Add(dur)
	var (
		mu       sync.Mutex
		lat      []time.Duration
		wg       sync.WaitGroup
		inFlight atomic.Int64
	)
	fire := func(due time.Time) {
		defer wg.Done()
		defer inFlight.Add(-1)
		body := spec.appendBody(make([]byte, 0, 512), g.seq.Add(1))
		err := g.do(ctx, t, body)
		if due.Before(from) {
			return
		}
		if err != nil {
			res.errs.add(err)
			return
		}
		d := time.Since(due)
		mu.Lock()
		lat = append(lat, d)
		mu.Unlock()
	}
	for i := 0; ctx.Err() == nil; {
		now := time.Now()
		for {
			due := start.Add(time.Duration(i) * interval)
			if due.After(now) || !due.Before(end) {
				break
			}
			i++
			if inFlight.Load() >= maxOpenInFlight {
				if !due.Before(from) {
					res.dropped++
				}
				continue
			}
			inFlight.Add(1)
			wg.Add(1)
			go fire(due)
		}
		next := start.Add(time.Duration(i) * interval)
		if !next.Before(end) {
			break
		}
		time.Sleep(time.Until(next))
	}
	wg.Wait()
	res.samples = lat
	res.completed = len(lat)
	res.lat = summarize(lat)
	return res
}

// streamStats is what the client saw of one streamed answer.
type streamStats struct {
	ttft   time.Duration   // request to the first data event
	gaps   []time.Duration // between consecutive data events
	chunks int             // data events, [DONE] included
	groups int             // runs of events that arrived together
}

// streamOnce sends a streaming request and reads the answer event by event
// as it arrives, timing each data event by the read that completed it.
// Events less than groupGap apart belong to one group: an engine that
// paces its tokens groupGap*2 apart produces one group per token, and a
// relay that batches events produces fewer. opened, when not nil, is
// called at the first data event.
func (g *loadGen) streamOnce(ctx context.Context, t *target, body []byte, groupGap time.Duration, opened func()) (streamStats, error) {
	var st streamStats
	req, err := g.newRequest(ctx, t, body)
	if err != nil {
		return st, err
	}
	t0 := time.Now()
	resp, err := g.client.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if err := checkStatus(resp); err != nil {
		return st, err
	}
	var (
		buf     = make([]byte, 8<<10)
		pending []byte
		hasData bool
		last    time.Time
		done    bool
	)
	for {
		n, rerr := resp.Body.Read(buf)
		now := time.Now()
		pending = append(pending, buf[:n]...)
		for {
			i := bytes.IndexByte(pending, '\n')
			if i < 0 {
				break
			}
			line := bytes.TrimSuffix(pending[:i], []byte{'\r'})
			pending = pending[i+1:]
			switch {
			case len(line) == 0 && hasData:
				hasData = false
				st.chunks++
				if st.chunks == 1 {
					st.ttft = now.Sub(t0)
					st.groups = 1
					if opened != nil {
						opened()
					}
				} else {
					gap := now.Sub(last)
					st.gaps = append(st.gaps, gap)
					if gap >= groupGap {
						st.groups++
					}
				}
				last = now
			case bytes.HasPrefix(line, []byte("data:")):
				hasData = true
				if bytes.Equal(bytes.TrimSpace(line[5:]), []byte("[DONE]")) {
					done = true
				}
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return st, rerr
		}
	}
	if !done {
		return st, errors.New("stream ended without [DONE]")
	}
	return st, nil
}

// streamResult is one streaming cell, or several merged.
type streamResult struct {
	completed int
	ttfts     []time.Duration
	gaps      []time.Duration
	ttft, gap summary // of ttfts and gaps
	chunks    []int   // per stream
	groups    []int   // per stream
	errs      errCount
}

// merge adds o, a later run of the same cell, to r.
func (r *streamResult) merge(o *streamResult) {
	r.completed += o.completed
	r.ttfts = append(r.ttfts, o.ttfts...)
	r.gaps = append(r.gaps, o.gaps...)
	r.ttft, r.gap = summarize(r.ttfts), summarize(r.gaps)
	r.chunks = append(r.chunks, o.chunks...)
	r.groups = append(r.groups, o.groups...)
	r.errs.merge(&o.errs)
}

// streamLoop runs conc workers that each stream an answer to its end and
// start the next, for warm+dur; streams that end within the last dur count.
func (g *loadGen) streamLoop(ctx context.Context, t *target, spec bodySpec, conc int, warm, dur, groupGap time.Duration) *streamResult {
	res := &streamResult{}
	from := time.Now().Add(warm)
	end := from.Add(dur)
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	for range conc {
		wg.Go(func() {
			buf := make([]byte, 0, 512)
			for ctx.Err() == nil {
				buf = spec.appendBody(buf[:0], g.seq.Add(1))
				if !time.Now().Before(end) {
					return
				}
				st, err := g.streamOnce(ctx, t, buf, groupGap, nil)
				t1 := time.Now()
				if t1.Before(from) || t1.After(end) {
					continue
				}
				if err != nil {
					res.errs.add(err)
					continue
				}
				mu.Lock()
				res.completed++
				res.ttfts = append(res.ttfts, st.ttft)
				res.gaps = append(res.gaps, st.gaps...)
				res.chunks = append(res.chunks, st.chunks)
				res.groups = append(res.groups, st.groups)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	res.ttft, res.gap = summarize(res.ttfts), summarize(res.gaps)
	return res
}

// medianInt returns the median of xs (the lower middle value), 0 for none.
func medianInt(xs []int) int {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[(len(s)-1)/2]
}
