package engine

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/helexa-ai/helexa-go/internal/engineargs"
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
	owned        map[string]bool // flags the neuron sets (see ownedFlags)
	env          []envVar        // sorted by key
	readyPath    string
	startTimeout time.Duration
	stopTimeout  time.Duration
	// liveness probing of a loaded engine
	liveInterval time.Duration
	liveTimeout  time.Duration
	liveFailures int
}

type envVar struct{ key, value string }

// optional are the placeholders an argument may mark optional, "{name?}":
// the ones a load may leave unset.
var optional = []string{"context", "gpus"}

// vars are the values of the placeholders for one engine process.
type vars struct {
	model, id, host, gpus string
	port, context         int
}

// unset reports whether the placeholder name has no value in this load:
// context 0, or no devices for gpus.
func (v vars) unset(name string) bool {
	switch name {
	case "context":
		return v.context == 0
	case "gpus":
		return v.gpus == ""
	}
	return false
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
		if name, ok := optionalArg(a); ok {
			if i == 0 || !slices.Contains(optional, name) {
				return nil, fmt.Errorf("engine %q: command[%d]: {%s?} cannot be optional (optional: {context?} {gpus?}, never the command itself)", c.Name, i, name)
			}
			continue
		}
		if strings.Contains(a, "?}") && optionalInside(a) {
			return nil, fmt.Errorf("engine %q: command[%d]: an optional placeholder must be a whole argument", c.Name, i)
		}
		if err := checkPlaceholders(a); err != nil {
			return nil, fmt.Errorf("engine %q: command[%d]: %w", c.Name, i, err)
		}
	}
	t.owned = ownedFlags(c.Command)
	for k, v := range c.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return nil, fmt.Errorf("engine %q: invalid env name %q", c.Name, k)
		}
		if optionalInside(v) {
			return nil, fmt.Errorf("engine %q: env %s: optional placeholders are for command arguments only", c.Name, k)
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
// entries win) of one engine process: the template expanded with v, an
// optional argument left out with its flag when unset, then the model's
// own arguments applied (args' Set, then its Extra; never expanded).
func (t *template) command(v vars, devices []int, args neuron.EngineArgs) (argv, env []string) {
	argv = make([]string, 0, len(t.argv)+len(args.Extra)+2*len(args.Set))
	// flag[i]: argv[i] is written in the template without a placeholder,
	// so it may be a flag that Set refers to.
	flag := make([]bool, 0, cap(argv))
	for i, a := range t.argv {
		if name, ok := optionalArg(a); ok {
			if v.unset(name) {
				if i > 1 && strings.HasPrefix(t.argv[i-1], "-") && flag[len(flag)-1] {
					argv, flag = argv[:len(argv)-1], flag[:len(flag)-1]
				}
				continue
			}
			val, _ := v.lookup(name)
			argv, flag = append(argv, val), append(flag, false)
			continue
		}
		e := expand(a, v)
		argv, flag = append(argv, e), append(flag, e == a)
	}
	for _, k := range slices.Sorted(maps.Keys(args.Set)) {
		val, found := args.Set[k], false
		for i := 1; i < len(argv); i++ {
			switch {
			case !flag[i]:
			case argv[i] == k:
				found = true
				if i+1 == len(argv) {
					argv, flag = append(argv, val), append(flag, false)
				} else {
					argv[i+1], flag[i+1] = val, false
				}
				i++
			case strings.HasPrefix(argv[i], k+"="):
				found = true
				argv[i] = k + "=" + val
			}
		}
		if !found {
			argv, flag = append(argv, k, val), append(flag, true, false)
		}
	}
	argv = append(argv, args.Extra...)
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

// optionalArg reports whether a is a whole optional argument, "{name?}",
// and returns the name.
func optionalArg(a string) (string, bool) {
	if len(a) < 4 || a[0] != '{' || !strings.HasSuffix(a, "?}") {
		return "", false
	}
	name := a[1 : len(a)-2]
	for i := 0; i < len(name); i++ {
		if !isNameByte(name[i]) {
			return "", false
		}
	}
	return name, true
}

// optionalInside reports whether s holds "{name?}" anywhere.
func optionalInside(s string) bool {
	p := engineargs.Placeholder(s)
	for p != "" {
		if strings.HasSuffix(p, "?}") {
			return true
		}
		i := strings.Index(s, p) + len(p)
		s = s[i:]
		p = engineargs.Placeholder(s)
	}
	return false
}

// ownedPlaceholders are the placeholders whose values the neuron alone
// decides: a flag whose template value holds one of them is the neuron's.
var ownedPlaceholders = []string{"model", "id", "port", "host", "gpus"}

// ownedFlags returns the flags of a template command that per-model
// arguments may not set or repeat: engineargs.OwnedFlags, and each flag
// whose value is built from an owned placeholder ("--alias", "{id}";
// "--port={port}"; "--tensor-split", "{gpus?}").
func ownedFlags(argv []string) map[string]bool {
	owned := make(map[string]bool)
	for _, f := range engineargs.OwnedFlags {
		owned[f] = true
	}
	holdsOwned := func(s string) bool {
		if name, ok := optionalArg(s); ok {
			return slices.Contains(ownedPlaceholders, name)
		}
		for i := 0; ; {
			at, name := nextPlaceholder(s, i)
			if at < 0 {
				return false
			}
			if slices.Contains(ownedPlaceholders, name) {
				return true
			}
			i = at + len(name) + 2
		}
	}
	for i, a := range argv {
		if i == 0 {
			continue
		}
		if f, val, ok := strings.Cut(a, "="); ok && strings.HasPrefix(f, "-") && holdsOwned(val) {
			owned[f] = true
		}
		if i > 1 && strings.HasPrefix(argv[i-1], "-") && holdsOwned(a) {
			owned[argv[i-1]] = true
		}
	}
	return owned
}

// checkArgs refuses per-model arguments that name a flag the template
// owns (ownedFlags); args passed EngineArgs.Validate.
func (t *template) checkArgs(args neuron.EngineArgs) error {
	var bad []string
	for _, k := range slices.Sorted(maps.Keys(args.Set)) {
		if t.owned[k] {
			bad = append(bad, fmt.Sprintf("engine_args.set.%s: %s is set by the neuron (engine %s)", k, k, t.name))
		}
	}
	for i, a := range args.Extra {
		f, _, _ := strings.Cut(a, "=")
		if t.owned[f] {
			bad = append(bad, fmt.Sprintf("engine_args.extra[%d]: %s is set by the neuron (engine %s)", i, f, t.name))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalidSpec, strings.Join(bad, "; "))
	}
	return nil
}

// secretWords mark a flag or an environment variable whose value must not
// be logged, as one of its dash-, underscore- or dot-separated words:
// "--api-key", "--hf-token", "HF_TOKEN", "LLAMA_API_KEY".
var secretWords = []string{"key", "apikey", "token", "secret", "password", "passwd", "credentials"}

// secretName reports whether a flag or variable name reads as a secret.
func secretName(name string) bool {
	words := strings.FieldsFunc(strings.ToLower(name), func(r rune) bool { return r == '-' || r == '_' || r == '.' })
	return slices.ContainsFunc(words, func(w string) bool { return slices.Contains(secretWords, w) })
}

// redacted is what a secret value is logged as.
const redacted = "[redacted]"

// redactArgv returns argv for a log line: the value of a secret flag
// ("--api-key X", "--api-key=X") is replaced.
func redactArgv(argv []string) []string {
	out := slices.Clone(argv)
	for i := 1; i < len(out); i++ {
		a := out[i]
		if !strings.HasPrefix(a, "-") {
			continue
		}
		if f, _, ok := strings.Cut(a, "="); ok {
			if secretName(f) {
				out[i] = f + "=" + redacted
			}
			continue
		}
		if secretName(a) && i+1 < len(out) {
			out[i+1] = redacted
			i++
		}
	}
	return out
}

// redactEnv returns KEY=value entries for a log line, the values of
// secret-looking keys replaced.
func redactEnv(env []string) []string {
	out := slices.Clone(env)
	for i, e := range out {
		if k, _, ok := strings.Cut(e, "="); ok && secretName(k) {
			out[i] = k + "=" + redacted
		}
	}
	return out
}
