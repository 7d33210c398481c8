package cortex

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode"
)

// NeuronConfig is one [[neurons]] entry of cortex.toml: a neuron the gateway
// polls and routes to.
type NeuronConfig struct {
	// Name identifies the neuron in routing decisions, pinned_on, metrics
	// and logs. Required; no spaces or control characters.
	Name string `toml:"name"`
	// Endpoint is the base URL of the neuron's management and inference
	// API, such as "http://10.0.0.5:31400". Required; http or https.
	Endpoint string `toml:"endpoint"`
	// Token is the bearer token the neuron requires; empty sends none.
	Token string `toml:"token"`
}

// Validate reports whether c is usable: a name without spaces or control
// characters and an absolute http(s) endpoint without query, fragment or
// user info.
func (c NeuronConfig) Validate() error {
	if c.Name == "" {
		return errors.New("empty name")
	}
	if i := strings.IndexFunc(c.Name, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }); i >= 0 {
		return fmt.Errorf("name %q contains a space or control character", c.Name)
	}
	if c.Endpoint == "" {
		return fmt.Errorf("neuron %q: empty endpoint", c.Name)
	}
	u, err := url.Parse(c.Endpoint)
	if err != nil {
		return fmt.Errorf("neuron %q: endpoint: %w", c.Name, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("neuron %q: endpoint %q: scheme must be http or https", c.Name, c.Endpoint)
	}
	if u.Host == "" {
		return fmt.Errorf("neuron %q: endpoint %q has no host", c.Name, c.Endpoint)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("neuron %q: endpoint has a query, fragment or user info (put the token in token)", c.Name)
	}
	return nil
}

// validateNeurons validates every entry and rejects duplicate names.
func validateNeurons(neurons []NeuronConfig) error {
	seen := make(map[string]int, len(neurons))
	for i, c := range neurons {
		if err := c.Validate(); err != nil {
			return fmt.Errorf("cortex: neurons[%d]: %w", i, err)
		}
		if j, dup := seen[c.Name]; dup {
			return fmt.Errorf("cortex: neurons[%d]: duplicate name %q (also neurons[%d])", i, c.Name, j)
		}
		seen[c.Name] = i
	}
	return nil
}
