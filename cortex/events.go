package cortex

import (
	"slices"
	"sync"
	"time"
)

// DefaultEventLogSize is how many recent events a Gateway keeps for its
// status page (Gateway.Events): the oldest is dropped when a new one
// arrives.
const DefaultEventLogSize = 100

// EventKind is what happened in an Event.
type EventKind string

// Event kinds.
const (
	// EventLoad: a model became ready on a neuron after a cold load the
	// gateway asked for.
	EventLoad EventKind = "load"
	// EventLoadFailed: a cold load failed (the load itself, or the
	// unload of a victim that aborted it).
	EventLoadFailed EventKind = "load_failed"
	// EventEvict: a model was unloaded to make room for another.
	EventEvict EventKind = "evict"
)

// Event is one thing the gateway did to the fleet: a cold load, its
// failure, or an eviction. The Gateway records them as they happen and
// keeps the last DefaultEventLogSize.
type Event struct {
	// Time is when it happened, by the gateway's Clock.
	Time time.Time `json:"time"`
	// Kind says what happened.
	Kind EventKind `json:"kind"`
	// Neuron is the neuron it happened on.
	Neuron string `json:"neuron"`
	// Model is the model loaded, or evicted.
	Model string `json:"model"`
	// For is, for an eviction, the model the room was made for.
	For string `json:"for,omitempty"`
	// Took is how long a load, successful or not, took (0 for an
	// eviction).
	Took time.Duration `json:"took_ns,omitempty"`
	// Error describes a failure without hosts or addresses: the neuron's
	// error code and message, or "the neuron could not be reached".
	Error string `json:"error,omitempty"`
}

// eventLog is a bounded ring of recent events. The zero value holds up to
// DefaultEventLogSize events and is safe for concurrent use.
type eventLog struct {
	mu   sync.Mutex
	ring []Event // capacity DefaultEventLogSize once the first event came
	next int     // where the next event goes once the ring is full
}

// add records e, dropping the oldest event when the ring is full.
func (l *eventLog) add(e Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.ring) < DefaultEventLogSize {
		if l.ring == nil {
			l.ring = make([]Event, 0, DefaultEventLogSize)
		}
		l.ring = append(l.ring, e)
		return
	}
	l.ring[l.next] = e
	l.next = (l.next + 1) % len(l.ring)
}

// recent returns the events, newest first.
func (l *eventLog) recent() []Event {
	l.mu.Lock()
	out := make([]Event, 0, len(l.ring))
	out = append(out, l.ring[l.next:]...)
	out = append(out, l.ring[:l.next]...)
	l.mu.Unlock()
	slices.Reverse(out)
	return out
}

// Events returns the gateway's recent loads, failed loads and evictions,
// newest first: at most DefaultEventLogSize. The slice is the caller's.
func (g *Gateway) Events() []Event { return g.events.recent() }
