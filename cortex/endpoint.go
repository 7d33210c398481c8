package cortex

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/neuron"
)

// endpointTimeout bounds one GET /models/{id}/endpoint.
const endpointTimeout = 10 * time.Second

// upstream is one configured neuron as the gateway reaches it: its
// configuration, its management client and the cache of its models'
// inference endpoints.
type upstream struct {
	cfg   NeuronConfig
	base  *url.URL // the configured endpoint
	admin NeuronAdmin
	poll  route.NeuronAPI // the default Poller's client of the neuron

	mu        sync.RWMutex
	endpoints map[string]endpointEntry // by model id
}

// endpointEntry is a cached endpoint and the state of the model it was
// fetched for.
type endpointEntry struct {
	url   *url.URL
	stamp modelStamp
}

// modelStamp is what invalidates a cached endpoint when it changes: the
// model's status and the time it last became loaded, in the fleet
// snapshot. The zero stamp is a model the snapshot does not list.
type modelStamp struct {
	status   neuron.ModelStatus
	loadedAt time.Time
}

func (s modelStamp) equal(o modelStamp) bool {
	return s.status == o.status && s.loadedAt.Equal(o.loadedAt)
}

func stampOf(f *route.Fleet, neuronName, model string) modelStamp {
	n := f.Neuron(neuronName)
	if n == nil {
		return modelStamp{}
	}
	m := n.Model(model)
	if m == nil {
		return modelStamp{}
	}
	return modelStamp{status: m.Status, loadedAt: m.LoadedAt}
}

func newUpstream(cfg NeuronConfig, base *url.URL, admin NeuronAdmin) *upstream {
	return &upstream{cfg: cfg, base: base, admin: admin, endpoints: make(map[string]endpointEntry)}
}

// endpoint returns the base URL to send inference for model to: the
// cached one while the model's stamp in f is unchanged, else the answer of
// GET /models/{id}/endpoint, rewritten by rewriteEndpoint. A failed call is
// an *UpstreamError.
func (u *upstream) endpoint(ctx context.Context, f *route.Fleet, model string) (*url.URL, error) {
	stamp := stampOf(f, u.cfg.Name, model)
	u.mu.RLock()
	e, ok := u.endpoints[model]
	u.mu.RUnlock()
	if ok && e.stamp.equal(stamp) {
		return e.url, nil
	}
	ctx, cancel := context.WithTimeout(ctx, endpointTimeout)
	defer cancel()
	raw, err := u.admin.Endpoint(ctx, model)
	if err != nil {
		return nil, &UpstreamError{Neuron: u.cfg.Name, Err: fmt.Errorf("endpoint of %s: %w", model, err)}
	}
	target, err := rewriteEndpoint(u.base, raw)
	if err != nil {
		return nil, &UpstreamError{Neuron: u.cfg.Name, Err: fmt.Errorf("endpoint of %s: %w", model, err)}
	}
	u.mu.Lock()
	u.endpoints[model] = endpointEntry{url: target, stamp: stamp}
	u.mu.Unlock()
	return target, nil
}

// forget drops the cached endpoint of model, after a connection to it
// failed or the model was unloaded.
func (u *upstream) forget(model string) {
	u.mu.Lock()
	delete(u.endpoints, model)
	u.mu.Unlock()
}

// errForeignEndpoint is an endpoint on a host other than the neuron's.
var errForeignEndpoint = errors.New("endpoint host is neither a loopback address nor the neuron's configured host")

// rewriteEndpoint turns the URL a neuron reports for a model into the URL
// the gateway sends to. The neuron reports its own URL, often as it sees
// itself: a loopback host (127.0.0.0/8, ::1, localhost) or the unspecified
// address (0.0.0.0, ::) is replaced by the host of the neuron's configured
// endpoint, keeping the reported scheme, port and path. A reported host
// equal to the configured one is used as it is. Any other host is refused:
// a neuron must not be able to send the gateway, and the prompts and
// tokens with it, to an arbitrary host. Query, fragment and user info are
// refused too, and a trailing slash of the path is dropped.
func rewriteEndpoint(configured *url.URL, reported string) (*url.URL, error) {
	u, err := url.Parse(reported)
	if err != nil {
		return nil, fmt.Errorf("invalid endpoint %q: %w", reported, err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("endpoint %q: scheme must be http or https", reported)
	case u.Host == "":
		return nil, fmt.Errorf("endpoint %q has no host", reported)
	case u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "":
		return nil, fmt.Errorf("endpoint %q has user info, a query or a fragment", reported)
	}
	host := u.Hostname()
	switch {
	case isLocalHost(host):
		if port := u.Port(); port != "" {
			u.Host = net.JoinHostPort(configured.Hostname(), port)
		} else {
			u.Host = hostOnly(configured.Hostname())
		}
	case strings.EqualFold(host, configured.Hostname()):
	default:
		return nil, fmt.Errorf("%w: %q", errForeignEndpoint, reported)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = strings.TrimRight(u.RawPath, "/")
	return u, nil
}

// isLocalHost reports whether host names this machine: localhost, a
// loopback address or the unspecified address.
func isLocalHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && (ip.IsLoopback() || ip.IsUnspecified())
}

// hostOnly formats a host without a port, bracketing an IPv6 address.
func hostOnly(host string) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]"
	}
	return host
}
