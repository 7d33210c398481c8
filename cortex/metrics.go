package cortex

import (
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/helexa-ai/helexa-go/clock"
	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/neuron"
)

// Metric label names. Labels stay bounded: model ids come from the
// catalogue or the neurons (never from a client's request as sent), neuron
// names from the configuration, and the other labels from fixed sets.
const (
	labelModel  = "model"
	labelNeuron = "neuron"
	labelClass  = "class"  // status class: 1xx..5xx, or none
	labelKind   = "kind"   // why a request failed: see outcome.kind
	labelResult = "result" // ok or error
)

// Buckets: durations from 5 ms to 5 min (a cached reply to a long
// generation or a cold start), token rates from 1 to 2048 per second.
var (
	durationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 180, 300}
	rateBuckets     = prometheus.ExponentialBuckets(1, 2, 12)
)

// metrics are the gateway's Prometheus metrics. The children of the
// per-request metrics are resolved once per (model, neuron) and cached, so
// that recording a request takes no lock and no label lookup.
type metrics struct {
	handler     http.Handler
	requests    *prometheus.CounterVec
	errors      *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	ttft        *prometheus.HistogramVec
	tps         *prometheus.HistogramVec
	prompt      *prometheus.CounterVec
	completion  *prometheus.CounterVec
	cached      *prometheus.CounterVec
	coldStarts  *prometheus.CounterVec
	loads       *prometheus.CounterVec
	evictions   *prometheus.CounterVec
	idleUnloads *prometheus.CounterVec
	scales      *prometheus.CounterVec // scale.go
	claims      *prometheus.CounterVec // claim.go
	// Fleet events: outlier.go, events.go.
	ejections      *prometheus.CounterVec
	engineFailures *prometheus.CounterVec
	engineRestarts *prometheus.CounterVec
	neuronDowns    *prometheus.CounterVec

	series sync.Map // seriesKey -> *series
	caches sync.Map // model id -> *cacheCounts
}

// cacheCounts are the prompt tokens of a model's requests whose usage the
// engine reported, and those of them that it read from its prompt cache:
// their ratio is the model's cache hit ratio. Only generating routes
// count (an embedding has no prompt cache to hit).
type cacheCounts struct {
	prompt, cached atomic.Int64
}

// PromptCache is a model's prompt cache hits since the gateway started,
// over the requests whose usage its engines reported (chat, completions,
// responses and messages; embeddings have none).
type PromptCache struct {
	// PromptTokens are the prompt tokens of those requests, and
	// CachedTokens the part of them the engines read from their prompt
	// (KV) cache, as their usage reported it.
	PromptTokens int64 `json:"prompt_tokens"`
	CachedTokens int64 `json:"cached_tokens"`
	// HitRatio is CachedTokens / PromptTokens; 0 without prompt tokens.
	HitRatio float64 `json:"hit_ratio"`
}

// promptCache returns the cache hits of model; false when none of its
// requests reported usage.
func (m *metrics) promptCache(model string) (PromptCache, bool) {
	v, ok := m.caches.Load(model)
	if !ok {
		return PromptCache{}, false
	}
	return v.(*cacheCounts).snapshot()
}

func (cc *cacheCounts) snapshot() (PromptCache, bool) {
	// cached is added after prompt: read it first, so that the ratio of
	// a snapshot taken between the two adds stays at most 1.
	cached := cc.cached.Load()
	prompt := cc.prompt.Load()
	if prompt <= 0 {
		return PromptCache{}, false
	}
	return PromptCache{PromptTokens: prompt, CachedTokens: cached, HitRatio: float64(cached) / float64(prompt)}, true
}

type seriesKey struct{ model, neuron string }

// series are the resolved children of one (model, neuron).
type series struct {
	m                   *metrics
	key                 seriesKey
	classes             [6]atomic.Pointer[prometheus.Counter] // by status / 100; 0: none
	duration, ttft, tps prometheus.Observer
	prompt, completion  prometheus.Counter
	cached              prometheus.Counter
	cache               *cacheCounts // of the model, shared by its neurons
	coldStarts          prometheus.Counter
	errorKinds          sync.Map // kind -> prometheus.Counter
}

var classLabels = [6]string{"none", "1xx", "2xx", "3xx", "4xx", "5xx"}

func newMetrics(reg *prometheus.Registry, fleet func() *route.Fleet, clock clock.Clock) (*metrics, error) {
	mn := []string{labelModel, labelNeuron}
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "helexa_requests_total",
			Help: "Inference requests served, by model, neuron and status class of the answer.",
		}, []string{labelModel, labelNeuron, labelClass}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "helexa_request_errors_total",
			Help: "Inference requests that failed, by model, neuron and kind: rejected, unavailable, upstream_status, upstream_broken, idle_timeout, canceled or internal.",
		}, []string{labelModel, labelNeuron, labelKind}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "helexa_request_duration_seconds",
			Help:    "Time from the request to the end of its answer.",
			Buckets: durationBuckets,
		}, mn),
		ttft: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "helexa_time_to_first_token_seconds",
			Help:    "Time from a streaming request to its first generated token.",
			Buckets: durationBuckets,
		}, mn),
		tps: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "helexa_tokens_per_second",
			Help:    "Completion tokens per second of generation (after the first token, for streams).",
			Buckets: rateBuckets,
		}, mn),
		prompt: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "helexa_prompt_tokens_total",
			Help: "Prompt tokens of the requests served.",
		}, mn),
		completion: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "helexa_completion_tokens_total",
			Help: "Completion tokens of the requests served.",
		}, mn),
		cached: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "helexa_cached_prompt_tokens_total",
			Help: "Prompt tokens of the requests served that the engine read from its prompt cache, as its usage reported them (part of helexa_prompt_tokens_total).",
		}, mn),
		coldStarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "helexa_cold_starts_total",
			Help: "Requests that waited for their model to load.",
		}, mn),
		loads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "helexa_model_loads_total",
			Help: "Model loads the gateway asked neurons for, by result (ok or error).",
		}, []string{labelModel, labelNeuron, labelResult}),
		evictions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "helexa_evictions_total",
			Help: "Models unloaded to make room for another, by evicted model.",
		}, mn),
		idleUnloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "helexa_idle_unloads_total",
			Help: "Models unloaded from a neuron where they had served nothing for their idle_unload.",
		}, mn),
		scales: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "helexa_scale_decisions_total",
			Help: "Replicas the gateway decided to add (out) or remove (in) for a model with replica bounds, by model and direction.",
		}, []string{labelModel, "direction"}),
		claims: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "helexa_replica_claims_total",
			Help: "Claims of a new replica of a model with replica bounds asked of its arbiter neuron, by model and result: granted, refused (at max_replicas) or unavailable (the arbiter could not be asked).",
		}, []string{labelModel, "result"}),
		ejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "helexa_replica_ejections_total",
			Help: "Times a replica (the model on the neuron) was taken out of rotation for failing again and again.",
		}, mn),
		engineFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "helexa_engine_failures_total",
			Help: "Engine failures the poller saw, by kind: crash, unresponsive (its liveness probes failed) or unknown (a neuron that does not say).",
		}, []string{labelModel, labelNeuron, labelKind}),
		engineRestarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "helexa_engine_restarts_total",
			Help: "Engine restarts after a failure the poller saw: the model loaded again.",
		}, mn),
		neuronDowns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "helexa_neuron_down_total",
			Help: "Times the neuron went down: its polls failed failure_threshold times in a row.",
		}, []string{labelNeuron}),
	}
	if err := registerAll(reg, m.requests, m.errors, m.duration, m.ttft, m.tps, m.prompt, m.completion, m.cached,
		m.coldStarts, m.loads, m.evictions, m.idleUnloads, m.scales, m.claims, m.ejections, m.engineFailures, m.engineRestarts, m.neuronDowns,
		newFleetCollector(fleet, clock), newCacheCollector(&m.caches)); err != nil {
		return nil, err
	}
	m.handler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	return m, nil
}

func registerAll(reg *prometheus.Registry, cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// seriesFor returns the resolved children of (model, neuron).
func (m *metrics) seriesFor(model, neuron string) *series {
	k := seriesKey{model, neuron}
	if s, ok := m.series.Load(k); ok {
		return s.(*series)
	}
	s := &series{
		m:          m,
		key:        k,
		duration:   m.duration.WithLabelValues(model, neuron),
		ttft:       m.ttft.WithLabelValues(model, neuron),
		tps:        m.tps.WithLabelValues(model, neuron),
		prompt:     m.prompt.WithLabelValues(model, neuron),
		completion: m.completion.WithLabelValues(model, neuron),
		cached:     m.cached.WithLabelValues(model, neuron),
		coldStarts: m.coldStarts.WithLabelValues(model, neuron),
	}
	cc, _ := m.caches.LoadOrStore(model, &cacheCounts{})
	s.cache = cc.(*cacheCounts)
	actual, _ := m.series.LoadOrStore(k, s)
	return actual.(*series)
}

// request returns the requests counter of a status class.
func (s *series) request(status int) prometheus.Counter {
	class := status / 100
	if class < 1 || class > 5 {
		class = 0
	}
	if c := s.classes[class].Load(); c != nil {
		return *c
	}
	c := s.m.requests.WithLabelValues(s.key.model, s.key.neuron, classLabels[class])
	s.classes[class].Store(&c)
	return c
}

func (s *series) errorsOf(kind string) prometheus.Counter {
	if c, ok := s.errorKinds.Load(kind); ok {
		return c.(prometheus.Counter)
	}
	c := s.m.errors.WithLabelValues(s.key.model, s.key.neuron, kind)
	s.errorKinds.Store(kind, c)
	return c
}

// observe records a finished request.
func (m *metrics) observe(c *exchange, end time.Time, u usage) {
	s := m.seriesFor(c.model.ID, c.neuron)
	s.request(c.status).Inc()
	if kind := c.outcome.kind(); kind != "" {
		s.errorsOf(kind).Inc()
	}
	s.duration.Observe(end.Sub(c.start).Seconds())
	if c.cold {
		s.coldStarts.Inc()
	}
	if !u.Served {
		return
	}
	s.prompt.Add(float64(u.Prompt))
	s.completion.Add(float64(u.Completion))
	s.cached.Add(float64(u.Cached))
	if u.Reported && c.kind != routeEmbeddings {
		s.cache.prompt.Add(u.Prompt)
		s.cache.cached.Add(u.Cached)
	}
	from := c.start
	if c.req.Stream && !c.firstToken.IsZero() {
		s.ttft.Observe(c.firstToken.Sub(c.start).Seconds())
		from = c.firstToken
	}
	if gen := end.Sub(from).Seconds(); u.Completion > 0 && gen > 0 {
		s.tps.Observe(float64(u.Completion) / gen)
	}
}

// loaded records a load the gateway asked for.
func (m *metrics) loaded(model, neuron string, ok bool) {
	result := "ok"
	if !ok {
		result = "error"
	}
	m.loads.WithLabelValues(model, neuron, result).Inc()
}

// idleUnloaded records a model unloaded for being idle.
func (m *metrics) idleUnloaded(model, neuron string) {
	m.idleUnloads.WithLabelValues(model, neuron).Inc()
}

// scaled records a scale decision carried out.
func (m *metrics) scaled(model string, dir route.ScaleDirection) {
	m.scales.WithLabelValues(model, dir.String()).Inc()
}

// claimed records the answer to a replica claim: "granted", "refused" or
// "unavailable".
func (m *metrics) claimed(model, result string) {
	m.claims.WithLabelValues(model, result).Inc()
}

// evicted records a model unloaded to make room.
func (m *metrics) evicted(model, neuron string) {
	m.evictions.WithLabelValues(model, neuron).Inc()
}

// ejected records an ejection.
func (m *metrics) ejected(model, neuron string) {
	m.ejections.WithLabelValues(model, neuron).Inc()
}

// fleetEvent counts an event of the fleet the poller saw.
func (m *metrics) fleetEvent(e Event) {
	switch e.Kind {
	case EventEngineFailed:
		kind := "unknown"
		switch e.Reason {
		case failureReason(neuron.FailureCrash):
			kind = string(neuron.FailureCrash)
		case failureReason(neuron.FailureUnresponsive):
			kind = string(neuron.FailureUnresponsive)
		}
		m.engineFailures.WithLabelValues(e.Model, e.Neuron, kind).Inc()
	case EventEngineRestarted:
		m.engineRestarts.WithLabelValues(e.Model, e.Neuron).Inc()
	case EventNeuronDown:
		m.neuronDowns.WithLabelValues(e.Neuron).Inc()
	}
}

// fleetCollector reports the fleet's state from the latest snapshot, at
// scrape time: neuron health, and each resident model's requests in
// flight (the gateway's) and queued (the neuron's), and whether it is
// ejected now.
type fleetCollector struct {
	fleet    func() *route.Fleet
	clock    clock.Clock
	healthy  *prometheus.Desc
	inFlight *prometheus.Desc
	queued   *prometheus.Desc
	freeVRAM *prometheus.Desc
	ejected  *prometheus.Desc
}

func newFleetCollector(fleet func() *route.Fleet, clock clock.Clock) *fleetCollector {
	return &fleetCollector{
		fleet: fleet,
		clock: clock,
		ejected: prometheus.NewDesc("helexa_replica_ejected",
			"1 while the replica (the model on the neuron) is out of rotation for failing again and again, else 0.",
			[]string{labelModel, labelNeuron}, nil),
		healthy: prometheus.NewDesc("helexa_neuron_healthy",
			"1 when the neuron takes new work (healthy and not draining), else 0.", []string{labelNeuron}, nil),
		inFlight: prometheus.NewDesc("helexa_model_in_flight",
			"Requests the gateway has in flight to the model on the neuron.", []string{labelModel, labelNeuron}, nil),
		queued: prometheus.NewDesc("helexa_model_queue_depth",
			"Requests queued for the model on the neuron, as its last /health reported.", []string{labelModel, labelNeuron}, nil),
		freeVRAM: prometheus.NewDesc("helexa_neuron_free_vram_bytes",
			"VRAM available for a new model on the neuron, as the gateway estimates it.", []string{labelNeuron}, nil),
	}
}

// Describe implements prometheus.Collector.
func (fc *fleetCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- fc.healthy
	ch <- fc.inFlight
	ch <- fc.queued
	ch <- fc.freeVRAM
	ch <- fc.ejected
}

// Collect implements prometheus.Collector.
func (fc *fleetCollector) Collect(ch chan<- prometheus.Metric) {
	f := fc.fleet()
	now := fc.clock.Now()
	for _, n := range f.Neurons() {
		v := 0.0
		if n.Available() {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(fc.healthy, prometheus.GaugeValue, v, n.Name)
		ch <- prometheus.MustNewConstMetric(fc.freeVRAM, prometheus.GaugeValue, float64(n.FreeVRAMMB())*(1<<20), n.Name)
		for i := range n.Models {
			m := &n.Models[i]
			ch <- prometheus.MustNewConstMetric(fc.inFlight, prometheus.GaugeValue, float64(m.Live.InFlight()), m.ID, n.Name)
			ch <- prometheus.MustNewConstMetric(fc.queued, prometheus.GaugeValue, float64(m.QueueDepth), m.ID, n.Name)
			ej := 0.0
			if m.Ejected(now) {
				ej = 1
			}
			ch <- prometheus.MustNewConstMetric(fc.ejected, prometheus.GaugeValue, ej, m.ID, n.Name)
		}
	}
}

// cacheCollector reports each model's prompt cache hit ratio at scrape
// time, from its cacheCounts.
type cacheCollector struct {
	caches *sync.Map
	ratio  *prometheus.Desc
}

func newCacheCollector(caches *sync.Map) *cacheCollector {
	return &cacheCollector{
		caches: caches,
		ratio: prometheus.NewDesc("helexa_prompt_cache_hit_ratio",
			"Share of the model's prompt tokens that its engines read from their prompt cache since the gateway started, over the requests whose usage they reported (embeddings excluded).",
			[]string{labelModel}, nil),
	}
}

// Describe implements prometheus.Collector.
func (cc *cacheCollector) Describe(ch chan<- *prometheus.Desc) { ch <- cc.ratio }

// Collect implements prometheus.Collector.
func (cc *cacheCollector) Collect(ch chan<- prometheus.Metric) {
	cc.caches.Range(func(k, v any) bool {
		if pc, ok := v.(*cacheCounts).snapshot(); ok {
			ch <- prometheus.MustNewConstMetric(cc.ratio, prometheus.GaugeValue, pc.HitRatio, k.(string))
		}
		return true
	})
}
