// Package config is the configuration machinery every TOML file of the
// project shares (cortex.toml, neuron.toml, its [entitlements] table and
// models.toml): strict decoding, where an unknown key is an error; one
// error type that gives the line of each problem, in one wording; and
// Duration, which is written as a string such as "30s" and never as a bare
// number.
//
// It imports no other package of the project, so that the leaf packages
// (entitlements, catalogue) may use it without depending on anything above
// them.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// Kinds of problem, in Error.Err.
var (
	// ErrUnknownKey is a key or table the file does not define.
	ErrUnknownKey = errors.New("unknown key")
	// ErrSyntax is a document that is not TOML, or a value of the wrong type.
	ErrSyntax = errors.New("invalid TOML")
	// ErrDuration is a duration that is not a string such as "30s".
	ErrDuration = errors.New("invalid duration")
)

// Error is one problem in a configuration file, with where it is.
//
// Error() reads "file:line: entry: message", leaving out what is unknown;
// without a file the line reads "line 7: ".
type Error struct {
	// File is the path of the file, or the name of the document; empty
	// when unknown.
	File string
	// Line is 1-based; 0 when unknown.
	Line int
	// Entry names the entry at fault, such as "neurons[1] (gpu-02)"; empty
	// for a problem outside any entry.
	Entry string
	// Msg says what is wrong.
	Msg string
	// Err is the kind of problem (ErrUnknownKey, ErrSyntax, ErrDuration),
	// or nil for a value that is invalid; Unwrap returns it.
	Err error
}

// Error formats the problem as "file:line: entry: message".
func (e *Error) Error() string {
	var b strings.Builder
	switch {
	case e.File != "" && e.Line > 0:
		b.WriteString(e.File)
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(e.Line))
		b.WriteString(": ")
	case e.File != "":
		b.WriteString(e.File)
		b.WriteString(": ")
	case e.Line > 0:
		b.WriteString("line ")
		b.WriteString(strconv.Itoa(e.Line))
		b.WriteString(": ")
	}
	if e.Entry != "" {
		b.WriteString(e.Entry)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns Err.
func (e *Error) Unwrap() error { return e.Err }

// Join joins errs with errors.Join; nil when there are none.
func Join(errs []*Error) error {
	if len(errs) == 0 {
		return nil
	}
	all := make([]error, len(errs))
	for i, e := range errs {
		all[i] = e
	}
	return errors.Join(all...)
}

// Flatten returns the errors joined in err (by errors.Join), or err alone.
func Flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// Options tune Decode. The zero value decodes strictly.
type Options struct {
	// File is written into every Error.
	File string
	// Lax ignores the keys that v does not define, for a reader that
	// wants one table of a larger file.
	Lax bool
	// Locate, when set, names the entry that holds a line, and returns the
	// key relative to that entry, for the messages.
	Locate func(line int, key []string) (entry string, rel []string)
}

// Decode decodes the TOML document data into v, a pointer to a struct
// with toml tags. An unknown key (unless o.Lax) and a duration that is
// not a string are errors; so are syntax and type errors. Every problem
// is an *Error with its line, in the order of the file; when the decoder
// stops at a syntax or type error, the problems before it are reported
// with it. v holds what was decoded.
func Decode(data []byte, v any, o Options) []*Error {
	root := reflect.TypeOf(v)
	d := &decoding{o: o, root: root, kvs: scan(data)}
	errs := d.checkDurations(d.kvs)
	dec := toml.NewDecoder(bytes.NewReader(data))
	if !o.Lax {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		for _, e := range d.translate(err) {
			// go-toml hands a float or a boolean at a Duration key to
			// UnmarshalText and returns its error without a position:
			// checkDurations has reported it already.
			if e.Line > 0 || len(errs) == 0 {
				errs = append(errs, e)
			}
		}
	}
	slices.SortStableFunc(errs, func(a, b *Error) int { return a.Line - b.Line })
	return errs
}

// decoding is one call of Decode.
type decoding struct {
	o    Options
	root reflect.Type
	kvs  []keyValue
}

func (d *decoding) newError(line int, key []string, kind error, format string, args ...any) *Error {
	e := &Error{File: d.o.File, Line: line, Err: kind}
	if d.o.Locate != nil {
		e.Entry, key = d.o.Locate(line, key)
	}
	name := keyString(key)
	msg := fmt.Sprintf(format, args...)
	if name != "" && !strings.Contains(msg, name) {
		msg = name + ": " + msg
	}
	e.Msg = msg
	return e
}

// translate turns a go-toml error into *Error values with lines.
func (d *decoding) translate(err error) []*Error {
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) {
		errs := make([]*Error, 0, len(strict.Errors))
		for i := range strict.Errors {
			de := &strict.Errors[i]
			line, _ := de.Position()
			errs = append(errs, d.unknown(line, fullKey(d.kvs, line, de.Key()), strings.HasSuffix(de.Error(), "missing table")))
		}
		return errs
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		line, _ := de.Position()
		key := []string(de.Key())
		msg := strings.TrimPrefix(de.Error(), "toml: ")
		if rest, ok := strings.CutPrefix(msg, "cannot decode TOML "); ok {
			// "cannot decode TOML float into struct field x.Limit.Context
			// of type int": say it in the file's terms. The key go-toml
			// gives is the enclosing table's for a value inside an inline
			// table, so the Go field names the key when there is one.
			got, into, _ := strings.Cut(rest, " into ")
			want := describe(keyType(d.root, key))
			if f, ok := strings.CutPrefix(into, "struct field "); ok {
				f, _, _ = strings.Cut(f, " of type ")
				if k, t := fieldKey(d.root, f); k != nil {
					key, want = k, describe(t)
				}
			}
			if want != "" {
				msg = fmt.Sprintf("want %s, got %s", want, got)
			}
		}
		return []*Error{d.newError(line, key, ErrSyntax, "%s", msg)}
	}
	return []*Error{{File: d.o.File, Msg: strings.TrimPrefix(err.Error(), "toml: "), Err: ErrSyntax}}
}

// unknown is the one wording of an unknown key or table.
func (d *decoding) unknown(line int, key []string, table bool) *Error {
	e := &Error{File: d.o.File, Line: line, Err: ErrUnknownKey}
	if d.o.Locate != nil {
		e.Entry, key = d.o.Locate(line, key)
	}
	what := "key"
	if table {
		what = "table"
	}
	e.Msg = fmt.Sprintf("unknown %s %q", what, keyString(key))
	return e
}

// keyString writes a key as TOML does, quoting the parts that need it.
func keyString(key []string) string {
	parts := make([]string, len(key))
	for i, p := range key {
		parts[i] = bareKey(p)
	}
	return strings.Join(parts, ".")
}

func bareKey(s string) string {
	if s == "" {
		return `""`
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return strconv.Quote(s)
		}
	}
	return s
}

var durationType = reflect.TypeFor[Duration]()

// keyValue is one key of the document, inline tables included: its full
// key (the indexes of arrays of tables left out), line and value.
type keyValue struct {
	key  []string
	line int
	kind unstable.Kind
	data string
}

// scan lists the keys of data with go-toml's own parser. It keeps what it
// found before a syntax error; the decoder reports the error.
func scan(data []byte) []keyValue {
	var newlines []int
	for i, b := range data {
		if b == '\n' {
			newlines = append(newlines, i)
		}
	}
	lineOf := func(n *unstable.Node) int {
		return sort.SearchInts(newlines, int(n.Raw.Offset)) + 1
	}
	var kvs []keyValue
	var add func(prefix []string, kv *unstable.Node)
	add = func(prefix []string, kv *unstable.Node) {
		key := slices.Clone(prefix)
		line := 0
		for it := kv.Key(); it.Next(); {
			k := it.Node()
			if line == 0 {
				line = lineOf(k)
			}
			key = append(key, string(k.Data))
		}
		val := kv.Value()
		kvs = append(kvs, keyValue{key: key, line: line, kind: val.Kind, data: string(val.Data)})
		switch val.Kind {
		case unstable.InlineTable:
			for c := val.Children(); c.Next(); {
				add(key, c.Node())
			}
		case unstable.Array:
			for c := val.Children(); c.Next(); {
				if n := c.Node(); n.Kind == unstable.InlineTable {
					for cc := n.Children(); cc.Next(); {
						add(key, cc.Node())
					}
				}
			}
		}
	}
	var p unstable.Parser
	p.Reset(data)
	var table []string
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			table = table[:0]
			for it := e.Key(); it.Next(); {
				table = append(table, string(it.Node().Data))
			}
		case unstable.KeyValue:
			add(table, e)
		}
	}
	return kvs
}

// fullKey corrects the key go-toml gives for an unknown key inside an
// inline table (the table's own key is left out: "keys.secs" for
// keys.window.secs) with the key the document has on that line.
func fullKey(kvs []keyValue, line int, key []string) []string {
	if len(key) == 0 {
		return key
	}
	for _, kv := range kvs {
		if kv.line == line && len(kv.key) > len(key) && kv.key[len(kv.key)-1] == key[len(key)-1] &&
			slices.Equal(kv.key[:len(key)-1], key[:len(key)-1]) {
			return kv.key
		}
	}
	return key
}

// checkDurations reports every value at a Duration key of the root type
// that is not a string. go-toml would store a bare integer as
// nanoseconds.
func (d *decoding) checkDurations(kvs []keyValue) []*Error {
	keys := map[string]bool{}
	durationKeys(d.root, "", keys, 0)
	var errs []*Error
	for _, kv := range kvs {
		if !keys[strings.Join(kv.key, ".")] || kv.kind == unstable.String {
			continue
		}
		switch kv.kind {
		case unstable.Integer, unstable.Float:
			errs = append(errs, d.newError(kv.line, kv.key, ErrDuration,
				"%s has no unit: write a string such as %q", kv.data, strings.ReplaceAll(kv.data, "_", "")+"s"))
		default:
			errs = append(errs, d.newError(kv.line, kv.key, ErrDuration,
				"want a duration, a string such as \"30s\", got %s", kindName(kv.kind)))
		}
	}
	return errs
}

func kindName(k unstable.Kind) string {
	switch k {
	case unstable.Bool:
		return "boolean"
	case unstable.Array:
		return "array"
	case unstable.InlineTable:
		return "inline table"
	case unstable.LocalDate, unstable.LocalTime, unstable.LocalDateTime, unstable.DateTime:
		return "date or time"
	}
	return strings.ToLower(k.String())
}

// durationKeys records the dotted keys of t that hold a Duration. The
// elements of an array of tables share the array's key.
func durationKeys(t reflect.Type, prefix string, keys map[string]bool, depth int) {
	if depth > 16 {
		return
	}
	t = elem(t)
	if t == durationType {
		keys[prefix] = true
		return
	}
	if t.Kind() != reflect.Struct {
		return
	}
	for i := range t.NumField() {
		f := t.Field(i)
		name, ok := tomlName(f)
		if !ok {
			continue
		}
		if f.Anonymous && name == "" {
			durationKeys(f.Type, prefix, keys, depth+1)
			continue
		}
		durationKeys(f.Type, join(prefix, name), keys, depth+1)
	}
}

// elem strips pointers and slices: what one value of t holds.
func elem(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Array {
		t = t.Elem()
	}
	return t
}

func join(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

// tomlName is the key of a struct field: its toml tag, or its name; "" for
// an embedded struct without a tag; false for a field go-toml skips.
func tomlName(f reflect.StructField) (string, bool) {
	if !f.IsExported() && !f.Anonymous {
		return "", false
	}
	tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
	switch {
	case tag == "-":
		return "", false
	case tag != "":
		return tag, true
	case f.Anonymous && elem(f.Type).Kind() == reflect.Struct:
		return "", true
	}
	return f.Name, true
}

// keyType is the type that holds key in root, or nil.
func keyType(root reflect.Type, key []string) reflect.Type {
	t := root
	for _, k := range key {
		t = elem(t)
		switch t.Kind() {
		case reflect.Map:
			t = t.Elem()
		case reflect.Struct:
			f, ok := fieldByKey(t, k)
			if !ok {
				return nil
			}
			t = f.Type
		default:
			return nil
		}
	}
	return t
}

func fieldByKey(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		name, ok := tomlName(f)
		switch {
		case !ok:
		case name == "" && f.Anonymous:
			if ff, ok := fieldByKey(elem(f.Type), key); ok {
				return ff, true
			}
		case strings.EqualFold(name, key):
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// fieldKey maps a Go field as go-toml names it ("catalogue.Limit.Context")
// to its key in the file (models.limit.context) and its type; nil when
// the field is not reachable from root.
func fieldKey(root reflect.Type, goField string) ([]string, reflect.Type) {
	i := strings.LastIndexByte(goField, '.')
	if i < 0 {
		return nil, nil
	}
	typeName, field := goField[:i], goField[i+1:]
	var found []string
	var ft reflect.Type
	var walk func(t reflect.Type, key []string, depth int)
	walk = func(t reflect.Type, key []string, depth int) {
		t = elem(t)
		if found != nil || depth > 16 {
			return
		}
		if t.Kind() == reflect.Map {
			walk(t.Elem(), append(key, "*"), depth+1)
			return
		}
		if t.Kind() != reflect.Struct {
			return
		}
		if t.String() == typeName {
			if f, ok := t.FieldByName(field); ok {
				name, _ := tomlName(f)
				found, ft = append(slices.Clip(key), name), f.Type
				return
			}
		}
		for j := range t.NumField() {
			f := t.Field(j)
			name, ok := tomlName(f)
			switch {
			case !ok:
			case name == "" && f.Anonymous:
				walk(f.Type, key, depth+1)
			default:
				walk(f.Type, append(slices.Clip(key), name), depth+1)
			}
		}
	}
	walk(root, nil, 0)
	if slices.Contains(found, "*") {
		return nil, nil
	}
	return found, ft
}

// describe says what a value of type t is in TOML's terms; "" for nil.
func describe(t reflect.Type) string {
	if t == nil {
		return ""
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == durationType {
		return `a duration, a string such as "30s"`
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Struct:
		return "a table"
	case reflect.Map:
		if t.Elem().Kind() == reflect.String {
			return "a table of strings"
		}
		return "a table"
	case reflect.Slice, reflect.Array:
		switch e := elem(t); e.Kind() {
		case reflect.Struct:
			return "an array of tables"
		case reflect.String:
			return "an array of strings"
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			return "an array of integers"
		}
		return "an array"
	}
	return ""
}

// Duration is a time.Duration written in a configuration file as a string
// that time.ParseDuration accepts, such as "30s" or "5m". A bare number is
// an error, with its key and line: it has no unit (Decode checks it;
// go-toml alone would store 2 as two nanoseconds). A negative duration is
// an error too.
type Duration time.Duration

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		if _, nerr := strconv.ParseFloat(string(b), 64); nerr == nil {
			return fmt.Errorf("duration %q has no unit: write a string such as %q", b, string(b)+"s")
		}
		return err
	}
	if v < 0 {
		return fmt.Errorf("negative duration %q", b)
	}
	*d = Duration(v)
	return nil
}

// MarshalText formats the duration as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// Std returns the duration as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// String formats the duration as time.Duration does.
func (d Duration) String() string { return time.Duration(d).String() }
