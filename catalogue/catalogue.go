package catalogue

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/helexa-ai/helexa-go/internal/engineargs"
)

// Default residency priorities, used where a model's ResidencyPriority is
// zero.
const (
	// DefaultResidencyPriority is the priority of a model not pinned.
	DefaultResidencyPriority = 100
	// DefaultPinnedResidencyPriority is the priority of a pinned model.
	DefaultPinnedResidencyPriority = 1000
)

// MinIdleUnload is the shortest Model.IdleUnload a catalogue accepts.
const MinIdleUnload = 10 * time.Second

// Catalogue is a validated set of models and aliases, built by Parse,
// Load or New.
//
// A Catalogue is immutable and safe for concurrent use by any number of
// goroutines. The zero value is an empty catalogue. Models it returns
// share memory with it and must not be modified (see Model.Clone).
type Catalogue struct {
	models  []Model        // sorted by ID
	index   map[string]int // model id or alias -> index in models
	aliases map[string]string
}

// New builds a catalogue from models and aliases (alias -> model id), with
// the same validation and defaults as Parse. It copies its inputs: later
// changes to them do not reach the catalogue. The errors are *Error values
// (joined when several) with Line 0.
func New(models []Model, aliases map[string]string) (*Catalogue, error) {
	c, errs := build(models, aliases, nil)
	if len(errs) > 0 {
		return nil, joinErrors(errs)
	}
	return c, nil
}

// Resolve returns the model with the given id, or the model an alias
// points to. It does not allocate.
func (c *Catalogue) Resolve(idOrAlias string) (Model, bool) {
	if c == nil {
		return Model{}, false
	}
	i, ok := c.index[idOrAlias]
	if !ok {
		return Model{}, false
	}
	return c.models[i], true
}

// Lookup returns the model with exactly the given id, ignoring aliases.
func (c *Catalogue) Lookup(id string) (Model, bool) {
	m, ok := c.Resolve(id)
	if !ok || m.ID != id {
		return Model{}, false
	}
	return m, true
}

// Len returns the number of models.
func (c *Catalogue) Len() int {
	if c == nil {
		return 0
	}
	return len(c.models)
}

// Models returns a copy of every model, sorted by id. The copies share
// nothing with the catalogue.
func (c *Catalogue) Models() []Model {
	if c == nil || len(c.models) == 0 {
		return nil
	}
	out := make([]Model, len(c.models))
	for i, m := range c.models {
		out[i] = m.Clone()
	}
	return out
}

// Aliases returns a copy of the alias map: alias -> model id.
func (c *Catalogue) Aliases() map[string]string {
	if c == nil {
		return map[string]string{}
	}
	return maps.Clone(c.aliases)
}

// build validates models and aliases, applies the defaults and returns
// the catalogue, or every problem found.
func build(models []Model, aliases map[string]string, at *lines) (*Catalogue, []*Error) {
	var errs []*Error
	add := func(line int, entry string, sentinel error, format string, args ...any) {
		errs = append(errs, &Error{Line: line, Entry: entry, Msg: fmt.Sprintf(format, args...), Err: sentinel})
	}

	c := &Catalogue{
		models:  make([]Model, 0, len(models)),
		index:   make(map[string]int, len(models)+len(aliases)),
		aliases: make(map[string]string, len(aliases)),
	}
	first := make(map[string]int, len(models)) // id -> entry index
	for i, m := range models {
		m = m.Clone()
		entry := entryName(i, m.ID)
		line := func(field string) int { return at.model(i, field) }
		switch {
		case m.ID == "":
			add(line("id"), entry, ErrMissingID, "missing id")
		case !validName(m.ID):
			add(line("id"), entry, ErrInvalidValue, "id %q has spaces or control characters", m.ID)
		default:
			if j, dup := first[m.ID]; dup {
				add(line("id"), entry, ErrDuplicateID, "duplicate id %q (first in models[%d])", m.ID, j)
			} else {
				first[m.ID] = i
			}
		}
		for _, f := range [...]struct {
			name string
			v    int
		}{
			{"min_devices", m.MinDevices},
			{"residency_priority", m.ResidencyPriority},
			{"limit.context", m.Limit.Context},
			{"limit.input", m.Limit.Input},
			{"limit.output", m.Limit.Output},
			{"min_replicas", m.MinReplicas},
			{"max_replicas", m.MaxReplicas},
		} {
			if f.v < 0 {
				add(line(f.name), entry, ErrNegative, "negative %s", f.name)
			}
		}
		switch {
		case m.IdleUnload < 0:
			add(line("idle_unload"), entry, ErrNegative, "negative idle_unload")
		case m.IdleUnload > 0 && m.IdleUnload < MinIdleUnload:
			add(line("idle_unload"), entry, ErrInvalidValue, "idle_unload %v is under %v: a model would be unloaded between two requests", m.IdleUnload, MinIdleUnload)
		}
		if m.MaxReplicas > 0 && m.MinReplicas > m.MaxReplicas {
			add(line("max_replicas"), entry, ErrInvalidValue, "max_replicas %d is under min_replicas %d", m.MaxReplicas, m.MinReplicas)
		}
		for k, s := range m.PinnedOn {
			if !validName(s) {
				add(line("pinned_on"), entry, ErrInvalidValue, "pinned_on[%d] %q: empty, or has spaces or control characters", k, s)
			}
		}
		for k, s := range m.Capabilities {
			if !validName(s) {
				add(line("capabilities"), entry, ErrInvalidValue, "capabilities[%d] %q: empty, or has spaces or control characters", k, s)
			}
		}
		for _, p := range engineargs.Check(m.EngineArgs.Extra, m.EngineArgs.Set) {
			field := "engine_args." + p.Key // engine_args.set.--port
			if strings.HasPrefix(p.Key, "extra[") {
				field = "engine_args.extra"
			}
			add(line(field), entry, ErrInvalidValue, "engine_args.%s", p.Error())
		}
		if m.Cost != nil {
			prices := []struct {
				name string
				v    *float64
			}{
				{"cost.input", &m.Cost.Input},
				{"cost.output", &m.Cost.Output},
				{"cost.cache_read", m.Cost.CacheRead},
				{"cost.cache_write", m.Cost.CacheWrite},
			}
			for _, p := range prices {
				switch {
				case p.v == nil:
				case math.IsNaN(*p.v) || math.IsInf(*p.v, 0):
					add(line(p.name), entry, ErrInvalidValue, "%s: not a finite number", p.name)
				case *p.v < 0:
					add(line(p.name), entry, ErrNegative, "negative %s", p.name)
				case *p.v > MaxPrice:
					add(line(p.name), entry, ErrInvalidValue, "%s: above %g USD per 1M tokens", p.name, float64(MaxPrice))
				}
			}
		}
		if m.MinDevices == 0 && m.VRAMMB > 0 {
			m.MinDevices = 1
		}
		if m.ResidencyPriority == 0 {
			m.ResidencyPriority = DefaultResidencyPriority
			if len(m.PinnedOn) > 0 {
				m.ResidencyPriority = DefaultPinnedResidencyPriority
			}
		}
		c.models = append(c.models, m)
	}

	for _, name := range slices.Sorted(maps.Keys(aliases)) {
		target := aliases[name]
		entry := aliasEntry(name)
		line := at.alias(name)
		_, isModel := first[target]
		switch {
		case !validName(name):
			add(line, entry, ErrInvalidValue, "alias name is empty, or has spaces or control characters")
		case hasKey(first, name):
			add(line, entry, ErrAliasShadowsID, "alias shadows the model with id %q", name)
		case !isModel && hasKey(aliases, target):
			add(line, entry, ErrAliasChain, "target %q is itself an alias (of %q); aliases resolve in one hop: point %s at a model id",
				target, aliases[target], strconv.Quote(name))
		case !isModel:
			add(line, entry, ErrUnknownModel, "unknown model %q", target)
		default:
			c.aliases[name] = target
		}
	}
	if len(errs) > 0 {
		slices.SortStableFunc(errs, func(a, b *Error) int {
			return cmp.Compare(lineOrder(a.Line), lineOrder(b.Line))
		})
		return nil, errs
	}

	slices.SortFunc(c.models, func(a, b Model) int { return cmp.Compare(a.ID, b.ID) })
	for i, m := range c.models {
		c.index[m.ID] = i
	}
	for name, target := range c.aliases {
		c.index[name] = c.index[target]
	}
	return c, nil
}

// lineOrder sorts unknown lines (0) after known ones.
func lineOrder(line int) int {
	if line <= 0 {
		return math.MaxInt
	}
	return line
}

func hasKey[V any](m map[string]V, k string) bool {
	_, ok := m[k]
	return ok
}

// validName reports whether s can be an id, an alias, a neuron name or a
// capability: not empty, no white space, no control characters.
func validName(s string) bool {
	if s == "" || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return false
		}
	}
	return true
}
