package route

import (
	"sync"
	"sync/atomic"
	"time"
)

// Usage holds the live state of every replica (a model on a neuron) that
// the gateway owns and a snapshot does not: the requests in flight to it
// and when it was last used (its Counter), and whether it is out of
// rotation (its Ejection). NewFleet links each ModelState to its Counter
// and Ejection in the Usage it is given, and raises LastUsed to the
// counter's last use, so that a Router reads the current in-flight count
// and ejection with one atomic load each.
//
// The gateway builds every Fleet it routes over with its own Usage; a
// Poller never sees it. Give each gateway its own Usage: two gateways that
// share one share their counts and ejections.
//
// The zero value is ready to use. A Usage is safe for concurrent use; Add,
// Done and Touch never block on I/O.
type Usage struct {
	mu       sync.RWMutex
	replicas map[usageKey]*replicaLive
}

// replicaLive is the live state of one replica, its counter and ejection
// side by side for the Router's hot loop.
type replicaLive struct {
	c Counter
	e Ejection
}

type usageKey struct{ neuron, model string }

// NewUsage returns an empty Usage.
func NewUsage() *Usage { return &Usage{} }

// Counter returns the counter of model on neuron, creating it on first use.
// The same pointer is returned for the life of the Usage.
func (u *Usage) Counter(neuron, model string) *Counter { return &u.replica(neuron, model).c }

// Ejection returns the ejection state of model on neuron, creating it on
// first use. The same pointer is returned for the life of the Usage.
func (u *Usage) Ejection(neuron, model string) *Ejection { return &u.replica(neuron, model).e }

func (u *Usage) replica(neuron, model string) *replicaLive {
	k := usageKey{neuron, model}
	u.mu.RLock()
	r := u.replicas[k]
	u.mu.RUnlock()
	if r != nil {
		return r
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.replicaLocked(k)
}

func (u *Usage) replicaLocked(k usageKey) *replicaLive {
	if r := u.replicas[k]; r != nil {
		return r
	}
	if u.replicas == nil {
		u.replicas = make(map[usageKey]*replicaLive)
	}
	r := new(replicaLive)
	u.replicas[k] = r
	return r
}

// lookup returns the counter of model on neuron, or nil when none exists.
func (u *Usage) lookup(neuron, model string) *Counter {
	u.mu.RLock()
	defer u.mu.RUnlock()
	if r := u.replicas[usageKey{neuron, model}]; r != nil {
		return &r.c
	}
	return nil
}

// Add records the start of a request to model on neuron.
func (u *Usage) Add(neuron, model string) { u.Counter(neuron, model).Add() }

// Done records the end of a request started with Add. It panics when there
// is no matching Add.
func (u *Usage) Done(neuron, model string) { u.Counter(neuron, model).Done() }

// Touch records a use of model on neuron at t. The last use never moves
// backwards.
func (u *Usage) Touch(neuron, model string, t time.Time) { u.Counter(neuron, model).Touch(t) }

// InFlight returns the requests to model on neuron between Add and Done.
func (u *Usage) InFlight(neuron, model string) int {
	if c := u.lookup(neuron, model); c != nil {
		return c.InFlight()
	}
	return 0
}

// LastUsed returns the last use of model on neuron recorded by Touch, or
// the zero time when it was never used.
func (u *Usage) LastUsed(neuron, model string) time.Time {
	if c := u.lookup(neuron, model); c != nil {
		return c.LastUsed()
	}
	return time.Time{}
}

// Counter is the live usage of one model on one neuron. The zero value is
// ready to use; every method is safe for concurrent use and allocation-free.
type Counter struct {
	inFlight atomic.Int64
	lastUsed atomic.Int64 // Unix nanoseconds; 0 means never used.
}

// Add records the start of a request.
func (c *Counter) Add() { c.inFlight.Add(1) }

// Done records the end of a request started with Add. It panics when there
// is no matching Add.
func (c *Counter) Done() {
	if c.inFlight.Add(-1) < 0 {
		c.inFlight.Add(1)
		panic("route: Counter.Done without a matching Add")
	}
}

// InFlight returns the requests between Add and Done. A nil Counter has
// none.
func (c *Counter) InFlight() int {
	if c == nil {
		return 0
	}
	return int(c.inFlight.Load())
}

// Touch records a use at t. The last use never moves backwards, so
// concurrent Touches may arrive in any order.
func (c *Counter) Touch(t time.Time) {
	n := t.UnixNano()
	for {
		old := c.lastUsed.Load()
		if n <= old || c.lastUsed.CompareAndSwap(old, n) {
			return
		}
	}
}

// LastUsed returns the latest time given to Touch, or the zero time when it
// was never touched. A nil Counter was never touched.
func (c *Counter) LastUsed() time.Time {
	if c == nil {
		return time.Time{}
	}
	n := c.lastUsed.Load()
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}
