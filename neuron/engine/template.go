package engine

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/helexa-ai/helexa-go/neuron"
)

// Defaults applied to an EngineConfig by New.
const (
	DefaultReadyPath    = "/health"
	DefaultStartTimeout = 10 * time.Minute
	DefaultStopTimeout  = 10 * time.Second
	// DefaultLivenessInterval, DefaultLivenessTimeout and
	// DefaultLivenessFailures: a loaded engine's ready path is probed every
	// 5s, each probe may take 3s, and 3 failed probes in a row mark the
	// engine hung.
	DefaultLivenessInterval = 5 * time.Second
	DefaultLivenessTimeout  = 3 * time.Second
	DefaultLivenessFailures = 3
)

// placeholders are the names a template may use as {name}.
var placeholders = []string{"model", "id", "port", "host", "gpus", "context"}

// template is a validated EngineConfig with its defaults applied.
type template struct {
	name         string
	argv         []string
	env          []envVar // sorted by key
	readyPath    string
	startTimeout time.Duration
	stopTimeout  time.Duration
	// liveness probing of a loaded engine
	liveInterval time.Duration
	liveTimeout  time.Duration
	liveFailures int
}

type envVar struct{ key, value string }

// vars are the values of the placeholders for one engine process.
type vars struct {
	model, id, host, gpus string
	port, context         int
}

func (v vars) lookup(name string) (string, bool) {
	switch name {
	case "model":
		return v.model, true
	case "id":
		return v.id, true
	case "port":
		return strconv.Itoa(v.port), true
	case "host":
		return v.host, true
	case "gpus":
		return v.gpus, true
	case "context":
		return strconv.Itoa(v.context), true
	}
	return "", false
}

func newTemplate(c neuron.EngineConfig) (*template, error) {
	if c.Name == "" {
		return nil, errors.New("engine name is empty")
	}
	if len(c.Command) == 0 || c.Command[0] == "" {
		return nil, fmt.Errorf("engine %q: command is empty", c.Name)
	}
	t := &template{
		name:         c.Name,
		argv:         slices.Clone(c.Command),
		readyPath:    c.ReadyPath,
		startTimeout: c.StartTimeout.Std(),
		stopTimeout:  c.StopTimeout.Std(),
		liveInterval: c.LivenessInterval.Std(),
		liveTimeout:  c.LivenessTimeout.Std(),
		liveFailures: c.LivenessFailures,
	}
	for i, a := range c.Command {
		if err := checkPlaceholders(a); err != nil {
			return nil, fmt.Errorf("engine %q: command[%d]: %w", c.Name, i, err)
		}
	}
	for k, v := range c.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return nil, fmt.Errorf("engine %q: invalid env name %q", c.Name, k)
		}
		if err := checkPlaceholders(v); err != nil {
			return nil, fmt.Errorf("engine %q: env %s: %w", c.Name, k, err)
		}
		t.env = append(t.env, envVar{k, v})
	}
	slices.SortFunc(t.env, func(a, b envVar) int { return strings.Compare(a.key, b.key) })
	if t.readyPath == "" {
		t.readyPath = DefaultReadyPath
	}
	if !strings.HasPrefix(t.readyPath, "/") {
		return nil, fmt.Errorf("engine %q: ready_path %q does not start with /", c.Name, t.readyPath)
	}
	switch {
	case t.startTimeout < 0:
		return nil, fmt.Errorf("engine %q: negative start_timeout", c.Name)
	case t.startTimeout == 0:
		t.startTimeout = DefaultStartTimeout
	}
	switch {
	case t.stopTimeout < 0:
		return nil, fmt.Errorf("engine %q: negative stop_timeout", c.Name)
	case t.stopTimeout == 0:
		t.stopTimeout = DefaultStopTimeout
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
		key string
	}{{&t.liveInterval, DefaultLivenessInterval, "liveness_interval"}, {&t.liveTimeout, DefaultLivenessTimeout, "liveness_timeout"}} {
		switch {
		case *d.v < 0:
			return nil, fmt.Errorf("engine %q: negative %s", c.Name, d.key)
		case *d.v == 0:
			*d.v = d.def
		}
	}
	switch {
	case t.liveFailures < 0:
		return nil, fmt.Errorf("engine %q: negative liveness_failures", c.Name)
	case t.liveFailures == 0:
		t.liveFailures = DefaultLivenessFailures
	}
	return t, nil
}

// command returns the argv and the extra environment (KEY=value, later
// entries win) of one engine process.
func (t *template) command(v vars, devices []int) (argv, env []string) {
	argv = make([]string, len(t.argv))
	for i, a := range t.argv {
		argv[i] = expand(a, v)
	}
	env = make([]string, 0, 2+len(t.env))
	env = append(env,
		"CUDA_DEVICE_ORDER=PCI_BUS_ID",
		"CUDA_VISIBLE_DEVICES="+joinDevices(devices))
	for _, e := range t.env {
		env = append(env, e.key+"="+expand(e.value, v))
	}
	return argv, env
}

// joinDevices formats device indexes as "0,2"; "" for none.
func joinDevices(devices []int) string {
	parts := make([]string, len(devices))
	for i, d := range devices {
		parts[i] = strconv.Itoa(d)
	}
	return strings.Join(parts, ",")
}

// nextPlaceholder finds the first {name} in s at or after from. It returns
// the index of the "{" and the name, or -1.
func nextPlaceholder(s string, from int) (int, string) {
	for i := from; i < len(s); i++ {
		if s[i] != '{' {
			continue
		}
		j := i + 1
		for j < len(s) && isNameByte(s[j]) {
			j++
		}
		if j > i+1 && j < len(s) && s[j] == '}' {
			return i, s[i+1 : j]
		}
	}
	return -1, ""
}

func isNameByte(c byte) bool {
	return c == '_' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

func checkPlaceholders(s string) error {
	for i := 0; ; {
		at, name := nextPlaceholder(s, i)
		if at < 0 {
			return nil
		}
		if !slices.Contains(placeholders, name) {
			return fmt.Errorf("unknown placeholder {%s} (known: {%s})", name, strings.Join(placeholders, "} {"))
		}
		i = at + len(name) + 2
	}
}

// expand replaces the known placeholders of s; anything else is kept.
func expand(s string, v vars) string {
	var b strings.Builder
	i := 0
	for {
		at, name := nextPlaceholder(s, i)
		if at < 0 {
			break
		}
		end := at + len(name) + 2
		val, ok := v.lookup(name)
		if !ok {
			val = s[at:end]
		}
		b.WriteString(s[i:at])
		b.WriteString(val)
		i = end
	}
	if i == 0 {
		return s
	}
	b.WriteString(s[i:])
	return b.String()
}
