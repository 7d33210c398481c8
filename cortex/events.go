package cortex

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/neuron"
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
	// EventIdleUnload: a model was unloaded from a neuron where it had
	// served nothing for its catalogue idle_unload; Reason says for how
	// long.
	EventIdleUnload EventKind = "idle_unload"
	// EventScaleOut: the gateway loads one more replica of a model with
	// replica bounds on the neuron (the load's own event follows);
	// Reason says why ("min_replicas 2", "work per replica 6.0 >= 4 for
	// 10s").
	EventScaleOut EventKind = "scale_out"
	// EventScaleIn: the gateway unloaded a replica of a model with
	// replica bounds from the neuron; Reason says why ("idle 5m0s",
	// "over max_replicas 3").
	EventScaleIn EventKind = "scale_in"
	// EventEject: a replica (the model on the neuron) kept failing and is
	// out of rotation until Until (see OutlierConfig).
	EventEject EventKind = "eject"
	// EventReadmit: an ejected replica is back in rotation; Reason says
	// why.
	EventReadmit EventKind = "readmit"
	// EventNeuronDown: the neuron's polls failed FailureThreshold times in
	// a row; it takes no new work, and what is shown of it is its last
	// known state.
	EventNeuronDown EventKind = "neuron_down"
	// EventNeuronUp: a neuron that was down answered a poll again.
	EventNeuronUp EventKind = "neuron_up"
	// EventEngineFailed: the model's engine failed on the neuron (it
	// crashed, or stopped answering its liveness probe): a poll shows it
	// failed or recovering where the last one showed it loaded or loading.
	EventEngineFailed EventKind = "engine_failed"
	// EventEngineRestarted: the neuron restarted the model's engine after
	// a failure, and it is loaded again.
	EventEngineRestarted EventKind = "engine_restarted"
)

// Event is one thing that happened to the fleet: a cold load the gateway
// asked for, its failure, or an eviction; a replica ejected or back in
// rotation; a neuron down or back; an engine that failed or was restarted
// (seen by the poller). The Gateway records them as they happen and keeps
// the last DefaultEventLogSize.
//
// Every field but Detail is shown to whoever may see the status page: none
// names a host, address, port or path, nor carries a transport error or
// an engine's output. Detail has those, for the admin view only.
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
	// Reason says why, in a fixed phrase: why a replica was ejected or
	// came back, how many failed polls took a neuron down, how many times
	// an engine was restarted.
	Reason string `json:"reason,omitempty"`
	// Until is when an ejection ends.
	Until time.Time `json:"until,omitzero"`
	// Detail is what the gateway knows of a failure that may name hosts,
	// ports or paths (a poll's error, an engine's last error and output);
	// admin view only.
	Detail string `json:"detail,omitempty"`
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

// Events returns the gateway's recent events (see Event), newest first: at
// most DefaultEventLogSize. The slice is the caller's, and has the admin
// detail.
func (g *Gateway) Events() []Event { return g.events.recent() }

// fleetEvents returns what changed from the snapshot prev to next, a pure
// function of the two: neurons that went down or came back, and engines
// that failed or were restarted. A failure is seen by the neuron's count of failures, or by a
// model that prev showed loaded and next shows failed, recovering or
// restarted (for a neuron that does not count failures); a restart by the
// neuron's count of restarts, or by a model loaded again where prev showed
// it failed or recovering. A failure and its restart between two polls are
// two events. Events are in neuron then model order.
func fleetEvents(prev, next *route.Fleet) []Event {
	if prev == nil || next == nil {
		return nil
	}
	at := next.At()
	var out []Event
	for _, n := range next.Neurons() {
		pn := prev.Neuron(n.Name)
		if pn == nil {
			continue
		}
		switch {
		case pn.Healthy && !n.Healthy:
			e := Event{Time: at, Kind: EventNeuronDown, Neuron: n.Name, Error: "the neuron could not be polled",
				Reason: failedPolls(n.Failures)}
			if n.LastError != nil {
				e.Detail = n.LastError.Error()
			}
			out = append(out, e)
		case !pn.Healthy && n.Healthy && pn.Failures > 0:
			out = append(out, Event{Time: at, Kind: EventNeuronUp, Neuron: n.Name, Reason: "after " + failedPolls(pn.Failures)})
		}
		// The models change only with a successful poll; a neuron that is
		// down keeps its last known ones.
		for i := range n.Models {
			m := &n.Models[i]
			pm := pn.Model(m.ID)
			if pm == nil {
				continue
			}
			wasLoaded, isLoaded := pm.Status == neuron.StatusLoaded, m.Status == neuron.StatusLoaded
			wasRecovering, isRecovering := recovering(pm.Status), recovering(m.Status)
			if m.Failures > pm.Failures || (wasLoaded && (isRecovering || m.Restarts > pm.Restarts)) {
				out = append(out, Event{Time: at, Kind: EventEngineFailed, Neuron: n.Name, Model: m.ID,
					Error: "the engine failed; the neuron restarts it", Reason: failureReason(m.LastFailure),
					Detail: strings.TrimSpace(m.LastFailureReason + "\n" + m.LastError)})
			}
			if isLoaded && (m.Restarts > pm.Restarts || wasRecovering) {
				e := Event{Time: at, Kind: EventEngineRestarted, Neuron: n.Name, Model: m.ID}
				if m.Restarts > 0 {
					e.Reason = "restart " + strconv.Itoa(m.Restarts)
				}
				out = append(out, e)
			}
		}
	}
	return out
}

// failureReason is the public reason of an engine failure of the given
// kind; "" when the neuron does not say.
func failureReason(k neuron.FailureKind) string {
	switch k {
	case neuron.FailureCrash:
		return "crashed"
	case neuron.FailureUnresponsive:
		return "unresponsive: its liveness probes failed"
	}
	return ""
}

// recovering reports whether a replica's neuron is restarting it.
func recovering(s neuron.ModelStatus) bool {
	return s == neuron.StatusRecovering || s == neuron.StatusFailed
}

func failedPolls(n int) string {
	if n == 1 {
		return "1 failed poll"
	}
	return strconv.Itoa(n) + " failed polls"
}

// observeFleet is told of each snapshot the default Poller publishes, with
// the one it replaced: it records the events of what changed, counts them
// in the metrics, and brings back the ejected replicas the snapshot shows
// loaded anew or whose period has ended.
func (g *Gateway) observeFleet(prev, next *route.Fleet) {
	for _, e := range fleetEvents(prev, next) {
		g.events.add(e)
		g.metrics.fleetEvent(e)
		switch e.Kind {
		case EventNeuronDown, EventEngineFailed:
			g.log.Warn("cortex: "+string(e.Kind), "neuron", e.Neuron, "model", e.Model, "err", e.Detail)
		default:
			g.log.Info("cortex: "+string(e.Kind), "neuron", e.Neuron, "model", e.Model, "reason", e.Reason)
		}
	}
	g.outliers.polled(next)
}

// outlierChanged records an ejection or a readmission as an event, in the
// metrics and in the log.
func (g *Gateway) outlierChanged(ch outlierChange) {
	e := Event{Time: ch.at, Neuron: ch.neuron, Model: ch.model, Kind: EventReadmit, Reason: ch.why}
	if ch.eject {
		e.Kind, e.Until = EventEject, ch.at.Add(ch.period)
		e.Reason = fmt.Sprintf("%d failures in a row; out of rotation for %v (ejection %d)", ch.failures, ch.period, ch.count)
		g.metrics.ejected(ch.model, ch.neuron)
		g.log.Warn("cortex: replica ejected", "neuron", ch.neuron, "model", ch.model, "failures", ch.failures,
			"for", ch.period, "ejection", ch.count)
	} else {
		g.log.Info("cortex: replica back in rotation", "neuron", ch.neuron, "model", ch.model, "reason", ch.why)
	}
	g.events.add(e)
}

// publicEvents returns events as a viewer who is not an admin sees them:
// without Detail, and with an Error that looks like it carries what only
// the admin view shows (an address, a port, a path, several lines) cut to
// its leading error code, if any.
func publicEvents(events []Event) []Event {
	for i := range events {
		e := &events[i]
		e.Detail = ""
		if e.Error != "" && internalDetail.MatchString(e.Error) {
			e.Error = publicError(e.Error)
		}
	}
	return events
}

// internalDetail matches text that may come from inside the fleet: an
// IPv4 or IPv6 address, a host:port, a URL, a file path, a transport
// error, or several lines.
var internalDetail = regexp.MustCompile(`\d+\.\d+\.\d+\.\d+|\[[0-9a-fA-F:]+\]|[0-9a-fA-F]*:[0-9a-fA-F]*:[0-9a-fA-F:]+|[A-Za-z0-9.\-]+:\d{2,5}\b|://|(^|[\s"'=(])(~|\.{1,2})?/[A-Za-z0-9._\-]|[A-Za-z]:\\|\n|\b(tcp|udp|unix)\b|connection (refused|reset)|no such host|broken pipe`)

// publicError keeps the leading error code of an error string ("code:
// message", as loadCause makes), else says that the detail is for admins.
func publicError(s string) string {
	code, _, ok := strings.Cut(s, ":")
	if ok && errorCode.MatchString(code) {
		return code + " (detail in the admin view)"
	}
	return "failed (detail in the admin view)"
}

var errorCode = regexp.MustCompile(`^[a-z][a-z0-9_]{2,63}$`)
