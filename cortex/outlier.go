package cortex

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/neuron"
)

// Outlier detection defaults (see OutlierConfig).
const (
	// DefaultConsecutiveFailures is how many failures in a row take a
	// replica out of rotation.
	DefaultConsecutiveFailures = 5
	// DefaultBaseEjectionTime is how long a first ejection lasts; the nth
	// lasts n times as long.
	DefaultBaseEjectionTime = 10 * time.Second
	// DefaultMaxEjectionTime caps an ejection.
	DefaultMaxEjectionTime = 5 * time.Minute
)

// OutlierConfig configures outlier ejection, after Envoy's outlier
// detection: a replica (a model on a neuron) whose answers fail
// ConsecutiveFailures times in a row is taken out of rotation for
// BaseEjectionTime times the number of its ejections, at most
// MaxEjectionTime. The number of ejections goes down by one for each
// BaseEjectionTime the replica then spends in rotation, so that a replica
// that fails again soon is ejected for longer, and one that recovered
// starts over. See the package documentation, Outlier ejection.
//
// The zero value is the default: enabled, 5 failures, 10 s, 5 min. A zero
// field takes its default.
type OutlierConfig struct {
	// Disabled turns outlier ejection off: no replica is ever ejected.
	Disabled bool `toml:"disabled"`
	// ConsecutiveFailures is how many failed answers in a row eject a
	// replica. Default DefaultConsecutiveFailures (5).
	ConsecutiveFailures int `toml:"consecutive_failures"`
	// BaseEjectionTime is how long a first ejection lasts. Default
	// DefaultBaseEjectionTime (10 s).
	BaseEjectionTime neuron.Duration `toml:"base_ejection_time"`
	// MaxEjectionTime caps an ejection. Default DefaultMaxEjectionTime
	// (5 min).
	MaxEjectionTime neuron.Duration `toml:"max_ejection_time"`
}

// withDefaults returns c with its zero fields set to the defaults.
func (c OutlierConfig) withDefaults() OutlierConfig {
	if c.ConsecutiveFailures == 0 {
		c.ConsecutiveFailures = DefaultConsecutiveFailures
	}
	if c.BaseEjectionTime == 0 {
		c.BaseEjectionTime = neuron.Duration(DefaultBaseEjectionTime)
	}
	if c.MaxEjectionTime == 0 {
		c.MaxEjectionTime = neuron.Duration(DefaultMaxEjectionTime)
	}
	return c
}

// Validate reports whether c is usable once its defaults are applied: a
// positive number of failures, positive times, and a base no longer than
// the maximum.
func (c OutlierConfig) Validate() error {
	d := c.withDefaults()
	var errs []error
	if d.ConsecutiveFailures < 1 {
		errs = append(errs, fmt.Errorf("consecutive_failures %d is below 1", c.ConsecutiveFailures))
	}
	if d.BaseEjectionTime < 0 {
		errs = append(errs, fmt.Errorf("base_ejection_time %v is negative", c.BaseEjectionTime.Std()))
	}
	if d.MaxEjectionTime < 0 {
		errs = append(errs, fmt.Errorf("max_ejection_time %v is negative", c.MaxEjectionTime.Std()))
	}
	if d.BaseEjectionTime > 0 && d.MaxEjectionTime > 0 && d.BaseEjectionTime > d.MaxEjectionTime {
		errs = append(errs, fmt.Errorf("base_ejection_time %v is longer than max_ejection_time %v",
			d.BaseEjectionTime.Std(), d.MaxEjectionTime.Std()))
	}
	return errors.Join(errs...)
}

// Ejection returns the live outlier state of model on neuron: the
// replica's Ejection in the gateway's Usage, which every Fleet the
// gateway builds links to route.ModelState.Ejection.
func (g *Gateway) Ejection(neuron, model string) *route.Ejection {
	return g.outliers.ejection(neuron, model)
}

// outlierState is what the tracker knows of one replica. It changes only
// through next, a pure function.
type outlierState struct {
	failures  int       // consecutive failures while in rotation
	ejections int       // the multiplier of the ejection time
	since     time.Time // the current ejection's start; zero: in rotation
	until     time.Time // its end
	back      time.Time // when it last came back into rotation
	// What the fleet showed of the replica when it was ejected: a poll
	// that shows it loaded anew (another loaded_at, more restarts) brings
	// it back.
	loadedAt time.Time
	restarts int
}

// outlierChange is a transition of one replica that the tracker reports:
// an ejection or a return to rotation.
type outlierChange struct {
	neuron, model string
	eject         bool          // true: ejected; false: back in rotation
	failures      int           // eject: the failures in a row
	period        time.Duration // eject: how long
	count         int           // eject: the ejection's multiplier
	why           string        // back: why
	at            time.Time
}

// Why a replica comes back into rotation.
const (
	backPeriodEnded = "its ejection period ended"
	backServed      = "it served a request"
	backReloaded    = "its neuron reports it loaded again"
)

// next is the state after an answer of the replica at now (failed or not):
// the pure decision of outlier detection. ok is true with a change to
// report.
func (s outlierState) next(failed bool, now time.Time, cfg OutlierConfig) (outlierState, outlierChange, bool) {
	var ch outlierChange
	changed := false
	if !s.since.IsZero() && !now.Before(s.until) {
		// The period ended: the replica came back then, with its count of
		// failures in a row started over.
		s = s.readmit(s.until)
		ch, changed = outlierChange{why: backPeriodEnded, at: s.back}, true
	}
	if !s.since.IsZero() {
		// Ejected, and the router fell back to it: a success brings it
		// back, a failure changes nothing.
		if failed {
			return s, outlierChange{}, false
		}
		return s.readmit(now), outlierChange{why: backServed, at: now}, true
	}
	if !failed {
		s.failures = 0
		return s, ch, changed
	}
	s.failures++
	if s.failures < cfg.ConsecutiveFailures {
		return s, ch, changed
	}
	// Eject. The multiplier goes down by one per base period spent in
	// rotation since the last ejection.
	base, most := cfg.BaseEjectionTime.Std(), cfg.MaxEjectionTime.Std()
	if s.ejections > 0 && !s.back.IsZero() && base > 0 {
		s.ejections = max(s.ejections-int(now.Sub(s.back)/base), 0)
	}
	s.ejections++
	period := most
	if base > 0 && s.ejections <= int(most/base) {
		period = base * time.Duration(s.ejections)
	}
	ch = outlierChange{eject: true, failures: s.failures, period: period, count: s.ejections, at: now}
	s.failures, s.since, s.until = 0, now, now.Add(period)
	return s, ch, true
}

// readmit returns s back in rotation at t.
func (s outlierState) readmit(t time.Time) outlierState {
	s.failures, s.since, s.until, s.back = 0, time.Time{}, time.Time{}, t
	return s
}

// reloaded reports whether m, the replica as a poll shows it, is loaded
// anew since s was ejected: loaded with another loaded_at, or more
// restarts, than when it was ejected.
func (s outlierState) reloaded(m *route.ModelState) bool {
	return m.Status == neuron.StatusLoaded && (!m.LoadedAt.Equal(s.loadedAt) || m.Restarts > s.restarts)
}

type replicaKey struct{ neuron, model string }

// outliers tracks the answers of every replica and ejects those that keep
// failing (see OutlierConfig). The Gateway owns one; the request path
// calls report with each answer, the poller's observer calls polled with
// each new snapshot. A nil or disabled *outliers ejects nothing.
//
// It is safe for concurrent use; notify is called with no lock held. A
// success of a replica in rotation that has not failed since (the common
// case) takes no lock.
type outliers struct {
	cfg    OutlierConfig
	now    func() time.Time
	fleet  func() *route.Fleet    // the snapshot when a replica is ejected; nil: none
	notify func(ch outlierChange) // each change; nil: none

	usage *route.Usage // where the live views are; nil: the tracker's own

	mu       sync.RWMutex // guards the map; each entry has its own lock
	replicas map[replicaKey]*outlierEntry
}

// outlierEntry is the tracker's entry of one replica: its state and the
// live view snapshots point to.
type outlierEntry struct {
	live  *route.Ejection
	clean atomic.Bool // in rotation without a failure since its last success

	mu sync.Mutex
	s  outlierState
}

// newOutliers returns a tracker whose live views are the Ejections of
// usage (nil: its own).
func newOutliers(cfg OutlierConfig, now func() time.Time, usage *route.Usage) *outliers {
	return &outliers{cfg: cfg.withDefaults(), now: now, usage: usage, replicas: make(map[replicaKey]*outlierEntry)}
}

// entry returns the entry of a replica, creating it.
func (o *outliers) entry(neuron, model string) *outlierEntry {
	k := replicaKey{neuron, model}
	o.mu.RLock()
	r := o.replicas[k]
	o.mu.RUnlock()
	if r != nil {
		return r
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if r = o.replicas[k]; r == nil {
		live := new(route.Ejection)
		if o.usage != nil {
			live = o.usage.Ejection(neuron, model)
		}
		r = &outlierEntry{live: live}
		r.clean.Store(true)
		o.replicas[k] = r
	}
	return r
}

// ejection returns the live Ejection of a replica, the same pointer for
// the life of the tracker; nil when o is nil.
func (o *outliers) ejection(neuron, model string) *route.Ejection {
	if o == nil {
		return nil
	}
	return o.entry(neuron, model).live
}

// report records an answer of model on neuron: failed is true for an
// answer that is the neuron's or its engine's own failure (a connection
// that failed, a 5xx of the neuron such as model_not_ready or an engine's
// error, a stream that broke off or went silent past the idle timeout),
// false for a 2xx answer. A client's 4xx, a client that left, and a
// neuron's queue_full (overload, which the Router steers away from by
// counting work) and model_not_found (a stale snapshot) are not reported.
// ConsecutiveFailures failed answers in a row eject the replica (see
// OutlierConfig); a success while ejected (the Router fell back to it)
// brings it back.
func (o *outliers) report(neuron, model string, failed bool) {
	if o == nil || o.cfg.Disabled {
		return
	}
	r := o.entry(neuron, model)
	if !failed && r.clean.Load() {
		return
	}
	now := o.now()
	r.mu.Lock()
	s, ch, ok := r.s.next(failed, now, o.cfg)
	if ok && ch.eject {
		s.loadedAt, s.restarts = o.shown(neuron, model)
	}
	r.set(s)
	r.mu.Unlock()
	if ok {
		ch.neuron, ch.model = neuron, model
		o.emit(ch)
	}
}

// shown returns the loaded_at and restarts of the replica in the latest
// snapshot.
func (o *outliers) shown(neuron, model string) (time.Time, int) {
	if o.fleet == nil {
		return time.Time{}, 0
	}
	if n := o.fleet().Neuron(neuron); n != nil {
		if m := n.Model(model); m != nil {
			return m.LoadedAt, m.Restarts
		}
	}
	return time.Time{}, 0
}

// set replaces the state and copies it into the live view. r.mu is held.
func (r *outlierEntry) set(s outlierState) {
	r.s = s
	if s.since.IsZero() {
		r.live.Readmit()
	} else {
		r.live.Eject(s.since, s.until)
	}
	r.clean.Store(s.since.IsZero() && s.failures == 0)
}

// polled brings back into rotation the ejected replicas that f shows
// loaded anew on an available neuron (see outlierState.reloaded), and
// those whose period has ended by f's time.
func (o *outliers) polled(f *route.Fleet) {
	if o == nil || o.cfg.Disabled || f == nil {
		return
	}
	type ejected struct {
		k replicaKey
		r *outlierEntry
	}
	var list []ejected
	o.mu.RLock()
	for k, r := range o.replicas {
		if !r.live.Until().IsZero() {
			list = append(list, ejected{k, r})
		}
	}
	o.mu.RUnlock()
	slices.SortFunc(list, func(a, b ejected) int {
		return cmp.Or(strings.Compare(a.k.neuron, b.k.neuron), strings.Compare(a.k.model, b.k.model))
	})
	for _, e := range list {
		k, r := e.k, e.r
		var m *route.ModelState
		if n := f.Neuron(k.neuron); n != nil && n.Available() {
			m = n.Model(k.model)
		}
		r.mu.Lock()
		var ch outlierChange
		switch s := r.s; {
		case s.since.IsZero():
			r.mu.Unlock()
			continue
		case !f.At().Before(s.until):
			ch = outlierChange{why: backPeriodEnded, at: s.until}
		case m != nil && s.reloaded(m):
			ch = outlierChange{why: backReloaded, at: f.At()}
		default:
			r.mu.Unlock()
			continue
		}
		r.set(r.s.readmit(ch.at))
		r.mu.Unlock()
		ch.neuron, ch.model = k.neuron, k.model
		o.emit(ch)
	}
}

func (o *outliers) emit(ch outlierChange) {
	if o.notify != nil {
		o.notify(ch)
	}
}

// reportAttempt reports the outcome of one attempt of the request on the
// named neuron, err being what proxy returned, to the outlier tracker (see
// outliers.report for what counts).
func (c *exchange) reportAttempt(name string, err error) {
	if failed, counts := c.attemptFailed(err); counts {
		c.g.outliers.report(name, c.model.ID, failed)
	}
}

// attemptFailed says whether an attempt counts for outlier detection, and
// whether as a failure: a connection that failed, a neuron's
// model_not_ready, a 5xx answer relayed, a stream that broke off or went
// silent are failures; a 2xx answer served is a success; a client that
// left, a 4xx, queue_full and model_not_found do not count.
func (c *exchange) attemptFailed(err error) (failed, counts bool) {
	if c.r.Context().Err() != nil {
		return false, false // the client left: nothing is known of the replica
	}
	if err != nil {
		var a *neuronAnswer
		if errors.As(err, &a) {
			return true, a.code == neuron.CodeModelNotReady
		}
		return true, errors.Is(err, ErrUpstream)
	}
	switch c.outcome {
	case outcomeBroken, outcomeTimeout:
		return true, true
	case outcomeCanceled:
		return false, false
	}
	switch {
	case c.status >= 500:
		return true, true
	case c.status >= 200 && c.status < 300:
		return false, true
	}
	return false, false
}
