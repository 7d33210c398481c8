package catalogue

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
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
	ID                string   `toml:"id"`
	Engine            string   `toml:"engine"`
	Source            string   `toml:"source"`
	VRAMMB            int64    `toml:"vram_mb"`
	MinDevices        int      `toml:"min_devices"`
	MinDeviceVRAMMB   int64    `toml:"min_device_vram_mb"`
	PinnedOn          []string `toml:"pinned_on"`
	ResidencyPriority int      `toml:"residency_priority"`
	Capabilities      []string `toml:"capabilities"`
	Limit             Limit    `toml:"limit"`
	Cost              *Cost    `toml:"cost"`
}

func parse(data []byte) (*Catalogue, []*Error) {
	at := scan(data)
	var f file
	dec := toml.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var errs []*Error
	if err := dec.Decode(&f); err != nil {
		var strict *toml.StrictMissingError
		var de *toml.DecodeError
		switch {
		case errors.As(err, &strict):
			// The rest of the document was decoded: check it too, so the
			// operator sees every problem at once.
			for i := range strict.Errors {
				errs = append(errs, at.unknownField(&strict.Errors[i]))
			}
		case errors.As(err, &de):
			return nil, []*Error{at.decodeError(de)}
		default:
			return nil, []*Error{{Msg: strings.TrimPrefix(err.Error(), "toml: "), Err: ErrSyntax}}
		}
	}

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
			Cost:              fm.Cost,
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

// unknownField turns one of go-toml's strict-mode errors into an *Error.
func (l *lines) unknownField(de *toml.DecodeError) *Error {
	line, _ := de.Position()
	entry, key := l.locate(line, de.Key())
	what := "field"
	if strings.HasSuffix(de.Error(), "missing table") {
		what = "table"
	}
	return &Error{Line: line, Entry: entry, Msg: fmt.Sprintf("unknown %s %q", what, key), Err: ErrUnknownField}
}

// decodeError turns a go-toml syntax or type error into an *Error.
func (l *lines) decodeError(de *toml.DecodeError) *Error {
	line, _ := de.Position()
	entry, key := l.locate(line, de.Key())
	msg := strings.TrimPrefix(de.Error(), "toml: ")
	if rest, ok := strings.CutPrefix(msg, "cannot decode TOML "); ok {
		// "cannot decode TOML float into struct field catalogue.Limit.Context
		// of type int": say it in the file's terms. The key go-toml gives
		// is the enclosing table's for a value inside an inline table, so
		// the Go field names the key when there is one.
		got, into, _ := strings.Cut(rest, " into ")
		want := wantType(de.Key())
		if f, ok := strings.CutPrefix(into, "struct field "); ok {
			f, _, _ = strings.Cut(f, " of type ")
			if path, w := fieldOf(f); path != "" {
				key, want = path, w
			}
		}
		if want != "" {
			msg = fmt.Sprintf("want %s, got %s", want, got)
		}
	}
	if key != "" && !strings.Contains(msg, key) {
		msg = key + ": " + msg
	}
	return &Error{Line: line, Entry: entry, Msg: msg, Err: ErrSyntax}
}

// fieldOf maps a Go field of the decoding types, as go-toml names it
// ("catalogue.Limit.Context"), to its key in the file ("limit.context")
// and the kind of value it holds; "" when it is not one of them.
func fieldOf(goField string) (key, want string) {
	parts := strings.Split(goField, ".")
	if len(parts) < 2 {
		return "", ""
	}
	var t reflect.Type
	var prefix string
	switch parts[len(parts)-2] {
	case "file":
		t = reflect.TypeFor[file]()
	case "fileModel":
		t = reflect.TypeFor[fileModel]()
	case "Limit":
		t, prefix = reflect.TypeFor[Limit](), "limit."
	case "Cost":
		t, prefix = reflect.TypeFor[Cost](), "cost."
	default:
		return "", ""
	}
	f, ok := t.FieldByName(parts[len(parts)-1])
	if !ok {
		return "", ""
	}
	ft := f.Type
	if ft.Kind() == reflect.Pointer {
		ft = ft.Elem()
	}
	switch ft.Kind() {
	case reflect.String:
		want = "a string"
	case reflect.Int, reflect.Int64:
		want = "an integer"
	case reflect.Float64:
		want = "a number"
	case reflect.Struct:
		want = "a table"
	case reflect.Map:
		want = "a table of strings"
	case reflect.Slice:
		want = "an array of strings"
		if ft.Elem().Kind() == reflect.Struct {
			want = "an array of tables"
		}
	}
	name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
	return prefix + name, want
}

// locate names the entry holding line and returns key relative to it.
func (l *lines) locate(line int, key toml.Key) (entry, rel string) {
	parts := []string(key)
	if i := l.entryAt(line); i >= 0 {
		if len(parts) > 0 && parts[0] == "models" {
			parts = parts[1:]
		}
		entry = entryName(i, l.models[i].id)
	} else if len(parts) == 2 && parts[0] == "aliases" {
		entry, parts = aliasEntry(parts[1]), nil
	}
	keys := make([]string, len(parts))
	for i, p := range parts {
		keys[i] = tomlKey(p)
	}
	return entry, strings.Join(keys, ".")
}

// wantType is what a key of models.toml holds, for messages; "" when key
// is not one.
func wantType(key toml.Key) string {
	switch {
	case len(key) == 1 && key[0] == "models":
		return "an array of tables"
	case len(key) == 1 && key[0] == "aliases":
		return "a table of strings"
	case len(key) == 2 && key[0] == "aliases":
		return "a string"
	case len(key) < 2 || key[0] != "models":
		return ""
	case len(key) == 3 && key[1] == "limit":
		return "an integer"
	case len(key) == 3 && key[1] == "cost":
		return "a number"
	case len(key) > 2:
		return ""
	}
	switch key[1] {
	case "id", "engine", "source":
		return "a string"
	case "vram_mb", "min_devices", "min_device_vram_mb", "residency_priority":
		return "an integer"
	case "pinned_on", "capabilities":
		return "an array of strings"
	case "limit", "cost":
		return "a table"
	}
	return ""
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
