package catalogue

import (
	"cmp"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"

	"github.com/helexa-ai/helexa-go/internal/config"
)

// Parse reads a catalogue from the contents of a models.toml file (see the
// package documentation for the format). Unknown keys are errors. The
// errors are *Error values, joined when there are several, each with its
// line and, inside [[models]] or [aliases], the entry it is about.
func Parse(data []byte) (*Catalogue, error) {
	c, errs := parse(data)
	if len(errs) > 0 {
		return nil, joinErrors(errs)
	}
	return c, nil
}

// Load reads and parses the models.toml file at path. The *Error values
// it returns carry path, so they read "path:line: ...".
func Load(path string) (*Catalogue, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("catalogue: %w", err)
	}
	c, errs := parse(data)
	if len(errs) > 0 {
		for _, e := range errs {
			e.Path = path
		}
		return nil, joinErrors(errs)
	}
	return c, nil
}

// file is the shape of models.toml. The VRAM sizes are signed here so that
// a negative one is reported as such, with its entry, rather than as a
// decoding failure.
type file struct {
	Models  []fileModel       `toml:"models"`
	Aliases map[string]string `toml:"aliases"`
}

type fileModel struct {
	ID                string     `toml:"id"`
	Engine            string     `toml:"engine"`
	Source            string     `toml:"source"`
	VRAMMB            int64      `toml:"vram_mb"`
	MinDevices        int        `toml:"min_devices"`
	MinDeviceVRAMMB   int64      `toml:"min_device_vram_mb"`
	PinnedOn          []string   `toml:"pinned_on"`
	ResidencyPriority int        `toml:"residency_priority"`
	Capabilities      []string   `toml:"capabilities"`
	Limit             Limit      `toml:"limit"`
	EngineArgs        EngineArgs `toml:"engine_args"`
	Cost              *Cost      `toml:"cost"`
	// IdleUnload is a Duration: a bare number is an error with its line.
	IdleUnload  config.Duration `toml:"idle_unload"`
	MinReplicas int             `toml:"min_replicas"`
	MaxReplicas int             `toml:"max_replicas"`
}

func parse(data []byte) (*Catalogue, []*Error) {
	at := scan(data)
	var f file
	var errs []*Error
	for _, e := range config.Decode(data, &f, config.Options{Locate: at.locate}) {
		kind := ErrSyntax
		if e.Err == config.ErrUnknownKey {
			kind = ErrUnknownField
		}
		errs = append(errs, &Error{Line: e.Line, Entry: e.Entry, Msg: e.Msg, Err: kind})
	}
	for _, e := range errs {
		if e.Err == ErrSyntax {
			// The decoder stopped there: what it decoded is not checked.
			return nil, errs
		}
	}
	// Unknown keys only: the rest of the document was decoded; check it
	// too, so the operator sees every problem at once.

	models := make([]Model, len(f.Models))
	for i, fm := range f.Models {
		for _, v := range [...]struct {
			name string
			v    int64
		}{{"vram_mb", fm.VRAMMB}, {"min_device_vram_mb", fm.MinDeviceVRAMMB}} {
			if v.v < 0 {
				errs = append(errs, &Error{
					Line:  at.model(i, v.name),
					Entry: entryName(i, fm.ID),
					Msg:   "negative " + v.name,
					Err:   ErrNegative,
				})
			}
		}
		models[i] = Model{
			ID:                fm.ID,
			Engine:            fm.Engine,
			Source:            fm.Source,
			VRAMMB:            uint64(max(fm.VRAMMB, 0)),
			MinDevices:        fm.MinDevices,
			MinDeviceVRAMMB:   uint64(max(fm.MinDeviceVRAMMB, 0)),
			PinnedOn:          fm.PinnedOn,
			ResidencyPriority: fm.ResidencyPriority,
			Capabilities:      fm.Capabilities,
			Limit:             fm.Limit,
			EngineArgs:        fm.EngineArgs,
			Cost:              fm.Cost,
			IdleUnload:        fm.IdleUnload.Std(),
			MinReplicas:       fm.MinReplicas,
			MaxReplicas:       fm.MaxReplicas,
		}
	}
	c, more := build(models, f.Aliases, at)
	errs = append(errs, more...)
	if len(errs) > 0 {
		slices.SortStableFunc(errs, func(a, b *Error) int { return cmp.Compare(lineOrder(a.Line), lineOrder(b.Line)) })
		return nil, errs
	}
	return c, nil
}

// locate names the entry holding line and returns key relative to it
// (config.Options.Locate).
func (l *lines) locate(line int, key []string) (entry string, rel []string) {
	parts := key
	if i := l.entryAt(line); i >= 0 {
		if len(parts) > 0 && parts[0] == "models" {
			parts = parts[1:]
		}
		entry = entryName(i, l.models[i].id)
	} else if len(parts) == 2 && parts[0] == "aliases" {
		entry, parts = aliasEntry(parts[1]), nil
	}
	return entry, parts
}

// lines tells where things are in the file. A nil *lines knows nothing.
type lines struct {
	models   []modelLines
	aliases  map[string]int
	sections []section // sorted by line
}

// modelLines is where one [[models]] entry is: the line of its header and
// of each key in it ("vram_mb", "cost.input", "cost").
type modelLines struct {
	header int
	id     string
	fields map[string]int
}

// model returns the line of field in the i-th model, or of its header
// when the field is not written out, or 0.
func (l *lines) model(i int, field string) int {
	if l == nil || i >= len(l.models) {
		return 0
	}
	e := l.models[i]
	for f := field; f != ""; {
		if n, ok := e.fields[f]; ok {
			return n
		}
		j := strings.LastIndexByte(f, '.')
		if j < 0 {
			break
		}
		f = f[:j] // "cost.input" -> "cost"
	}
	return e.header
}

// alias returns the line of the alias, or 0.
func (l *lines) alias(name string) int {
	if l == nil {
		return 0
	}
	return l.aliases[name]
}

// section is a run of lines that starts at a table header: part of the
// model entry with index model, or outside any (-1).
type section struct {
	line  int
	model int
}

// entryAt returns the index of the [[models]] entry that holds line, or -1.
func (l *lines) entryAt(line int) int {
	if l == nil {
		return -1
	}
	i := sort.Search(len(l.sections), func(i int) bool { return l.sections[i].line > line })
	if i == 0 {
		return -1
	}
	return l.sections[i-1].model
}

// scan finds the lines of the [[models]] entries, of the keys in them and
// of the aliases, with go-toml's own parser. It keeps what it found before
// a syntax error; the decoder reports the error.
func scan(data []byte) *lines {
	l := &lines{aliases: map[string]int{}}
	var newlines []int
	for i, b := range data {
		if b == '\n' {
			newlines = append(newlines, i)
		}
	}
	lineOf := func(r unstable.Range) int {
		return sort.SearchInts(newlines, int(r.Offset)) + 1
	}
	keyOf := func(it unstable.Iterator) (key []string, line int) {
		for it.Next() {
			k := it.Node()
			if len(key) == 0 {
				line = lineOf(k.Raw)
			}
			key = append(key, string(k.Data))
		}
		return key, line
	}

	var p unstable.Parser
	p.Reset(data)
	model := -1         // the entry the current table belongs to
	var prefix []string // the current table's key inside its entry
	inAliases, atRoot := false, true
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			key, line := keyOf(e.Key())
			model, prefix, inAliases, atRoot = -1, nil, false, false
			switch {
			case e.Kind == unstable.ArrayTable && len(key) == 1 && key[0] == "models":
				l.models = append(l.models, modelLines{header: line, fields: map[string]int{}})
				model = len(l.models) - 1
			case len(key) > 1 && key[0] == "models" && len(l.models) > 0:
				model, prefix = len(l.models)-1, key[1:]
				l.models[model].field(prefix, line)
			case len(key) == 1 && key[0] == "aliases":
				inAliases = true
			}
			l.sections = append(l.sections, section{line: line, model: model})
		case unstable.KeyValue:
			key, line := keyOf(e.Key())
			switch {
			case model >= 0:
				full := append(slices.Clip(prefix), key...)
				l.models[model].field(full, line)
				if v := e.Value(); len(full) == 1 && full[0] == "id" && v.Kind == unstable.String && l.models[model].id == "" {
					l.models[model].id = string(v.Data)
				}
			case inAliases && len(key) == 1:
				l.aliases[key[0]] = line
			case atRoot && len(key) == 2 && key[0] == "aliases":
				l.aliases[key[1]] = line
			case atRoot && len(key) == 1 && key[0] == "aliases" && e.Value().Kind == unstable.InlineTable:
				it := e.Value().Children()
				for it.Next() {
					if kv := it.Node(); kv.Kind == unstable.KeyValue {
						if k, line := keyOf(kv.Key()); len(k) == 1 {
							l.aliases[k[0]] = line
						}
					}
				}
			}
		}
	}
	return l
}

// field records the line of key and of each of its prefixes, keeping the
// first line seen.
func (m *modelLines) field(key []string, line int) {
	for i := range key {
		k := strings.Join(key[:i+1], ".")
		if _, ok := m.fields[k]; !ok {
			m.fields[k] = line
		}
	}
}
