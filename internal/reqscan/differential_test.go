package reqscan_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/helexa-ai/helexa-go/internal/reqscan"
)

// The differential fuzz target: a body built from the fuzz input is read by
// the gateway's reader (Scan) and by two lenient engine readers, and they
// must agree on every field that decides the price, the model, streaming,
// the number of outputs and the output length, or Scan must refuse the body.
// After the gateway's edits (the model it priced, the bound it reserved)
// every reader must see that model and no bound above the reserved one.

// goEngine reads a body as a Go engine would (the simulated engine, or an
// embedder's): encoding/json into a struct, which matches keys without
// regard to case, unescapes them and keeps the last duplicate.
type goEngine struct {
	Model               *string         `json:"model"`
	Stream              *bool           `json:"stream"`
	StreamOptions       *goStreamOpts   `json:"stream_options"`
	N                   *int64          `json:"n"`
	BestOf              *int64          `json:"best_of"`
	NCmpl               *int64          `json:"n_cmpl"`
	Prompt              json.RawMessage `json:"prompt"`
	MaxTokens           *int64          `json:"max_tokens"`
	MaxCompletionTokens *int64          `json:"max_completion_tokens"`
	MaxOutputTokens     *int64          `json:"max_output_tokens"`
	NPredict            *int64          `json:"n_predict"`
	MaxNewTokens        *int64          `json:"max_new_tokens"`
}

type goStreamOpts struct {
	IncludeUsage *bool `json:"include_usage"`
}

// reading is what a reader made of a body.
type reading struct {
	Model                string
	Stream, IncludeUsage bool
	Sequences            int64
	Bounds               map[string]int64
}

func readGo(body []byte) (reading, error) {
	var v goEngine
	if err := json.Unmarshal(body, &v); err != nil {
		return reading{}, err
	}
	rd := reading{Bounds: map[string]int64{}}
	if v.Model != nil {
		rd.Model = *v.Model
	}
	if v.Stream != nil {
		rd.Stream = *v.Stream
	}
	if v.StreamOptions != nil && v.StreamOptions.IncludeUsage != nil {
		rd.IncludeUsage = *v.StreamOptions.IncludeUsage
	}
	rd.Sequences = sequences(deref(v.N), deref(v.BestOf), deref(v.NCmpl), v.Prompt)
	for name, p := range map[string]*int64{"max_tokens": v.MaxTokens, "max_completion_tokens": v.MaxCompletionTokens,
		"max_output_tokens": v.MaxOutputTokens, "n_predict": v.NPredict, "max_new_tokens": v.MaxNewTokens} {
		if p != nil {
			rd.Bounds[name] = *p
		}
	}
	return rd, nil
}

// readExact reads a body as Python's json module and nlohmann's json do:
// keys matched exactly, the last duplicate kept.
func readExact(body []byte) (reading, error) {
	var v map[string]any
	if err := json.Unmarshal(body, &v); err != nil {
		return reading{}, err
	}
	rd := reading{Bounds: map[string]int64{}}
	rd.Model, _ = v["model"].(string)
	rd.Stream, _ = v["stream"].(bool)
	if so, ok := v["stream_options"].(map[string]any); ok {
		rd.IncludeUsage, _ = so["include_usage"].(bool)
	}
	num := func(k string) int64 { f, _ := v[k].(float64); return int64(f) }
	prompt, _ := json.Marshal(v["prompt"])
	rd.Sequences = sequences(num("n"), num("best_of"), num("n_cmpl"), prompt)
	for _, k := range []string{"max_tokens", "max_completion_tokens", "max_output_tokens", "n_predict", "max_new_tokens"} {
		if f, ok := v[k].(float64); ok {
			rd.Bounds[k] = int64(f)
		}
	}
	return rd, nil
}

func deref(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}

// sequences is the outputs an engine generates: the prompts of a prompt
// array times the most of n, best_of and n_cmpl.
func sequences(n, bestOf, nCmpl int64, prompt json.RawMessage) int64 {
	prompts := int64(1)
	var list []json.RawMessage
	if json.Unmarshal(prompt, &list) == nil && len(list) > 0 && (list[0][0] == '"' || list[0][0] == '[') {
		prompts = int64(len(list))
	}
	return max(n, bestOf, nCmpl, 1) * prompts
}

func readScan(r *reqscan.Request, body []byte) reading {
	rd := reading{Model: r.Model, Stream: r.Stream, IncludeUsage: r.IncludeUsage, Sequences: r.Sequences(), Bounds: map[string]int64{}}
	names := []string{"max_completion_tokens", "max_tokens", "max_output_tokens", "n_predict", "max_new_tokens"}
	for i, sp := range r.MaxTokensSpans {
		if sp.Present() && body[sp.Start] != 'n' { // null is absent
			var n int64
			fmt.Sscan(string(body[sp.Start:sp.End]), &n)
			rd.Bounds[names[i]] = n
		}
	}
	return rd
}

// keyVariants are the spellings of the fields read, exact and not.
var keyVariants = [][]string{
	{"model", "MODEL", `\u006dodel`, "Model"},
	{"stream", "Stream", `\u017ftream`, "ſtream"},
	{"max_tokens", "Max_Tokens", `\u006dax_tokens`, "max_to\u212aens"},
	{"max_completion_tokens", "MAX_COMPLETION_TOKENS"},
	{"max_output_tokens", "max_output_Tokens"},
	{"n_predict", "N_PREDICT", `n_pred\u0069ct`, "n_predıct"},
	{"max_new_tokens", "Max_New_Tokens"},
	{"n", "N"},
	{"best_of", "BEST_OF"},
	{"n_cmpl", "N_cmpl"},
	{"prompt", "Prompt"},
	{"stream_options", "Stream_Options"},
	{"other", "tools"},
}

var valueChoices = map[string][]string{
	"model":  {`"cheap"`, `"dear"`, `"d\u0065ar"`, `5`, `null`},
	"stream": {`true`, `false`, `null`, `"true"`},
	"n":      {`1`, `3`, `null`, `128`, `0`},
	"prompt": {`"hi"`, `["a","b","c"]`, `[1,2]`, `[[1],[2]]`, `[]`, `null`},
	"stream_options": {`{"include_usage":false}`, `{"include_usage":true}`, `{"Include_Usage":true}`,
		`{"include_usage":false,"include_usage":true}`, `{}`, `null`},
	"other": {`{"model":"x"}`, `[1]`, `"s"`},
	"bound": {`5`, `100000`, `-1`, `null`, `1.0`, `"7"`},
}

func valuesFor(field string) []string {
	switch field {
	case "max_tokens", "max_completion_tokens", "max_output_tokens", "n_predict", "max_new_tokens":
		return valueChoices["bound"]
	case "best_of", "n_cmpl":
		return valueChoices["n"]
	}
	return valueChoices[field]
}

// buildBody makes a JSON object from the fuzz input: each three bytes pick
// a field, its spelling and its value.
func buildBody(in []byte) []byte {
	var b strings.Builder
	b.WriteByte('{')
	for i := 0; i+2 < len(in) && i < 3*12; i += 3 {
		f := keyVariants[int(in[i])%len(keyVariants)]
		key := f[int(in[i+1])%len(f)]
		vals := valuesFor(f[0])
		if b.Len() > 1 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"%s":%s`, key, vals[int(in[i+2])%len(vals)])
	}
	b.WriteByte('}')
	return []byte(b.String())
}

func FuzzDifferential(f *testing.F) {
	for _, s := range [][]byte{
		{0, 0, 0, 2, 0, 0},       // model, max_tokens
		{0, 0, 0, 0, 0, 1},       // duplicate model
		{0, 0, 0, 0, 1, 1},       // MODEL after model
		{2, 0, 0, 5, 0, 1},       // max_tokens small, n_predict huge
		{10, 0, 1, 7, 0, 1},      // prompt array, n
		{1, 2, 0, 11, 0, 3},      // escaped ſtream, stream_options with duplicate
		{5, 3, 1, 2, 3, 1},       // n_predıct, max_toKens
		{9, 0, 1, 7, 0, 1, 8, 0}, // n_cmpl, n
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		body := buildBody(in)
		var r reqscan.Request
		if err := reqscan.Scan(body, &r); err != nil {
			return // refused: nothing reaches an engine
		}
		gw := readScan(&r, body)
		for name, read := range map[string]func([]byte) (reading, error){"go": readGo, "exact": readExact} {
			got, err := read(body)
			if err != nil {
				continue // the engine refuses it: nothing is generated
			}
			if got.Model != gw.Model || got.Stream != gw.Stream || got.IncludeUsage != gw.IncludeUsage ||
				got.Sequences > gw.Sequences || fmt.Sprint(got.Bounds) != fmt.Sprint(gw.Bounds) {
				t.Fatalf("%s\nthe %s engine reads %+v\nthe gateway reads %+v", body, name, got, gw)
			}
		}
		// The gateway's edits: the model it priced, the bound it reserved.
		e, _ := r.RequestUsage()
		out := reqscan.Apply(body, append(r.SetMaxTokens(5, "max_tokens"), r.SetModel("priced"), e)...)
		for name, read := range map[string]func([]byte) (reading, error){"go": readGo, "exact": readExact} {
			got, err := read(out)
			if err != nil {
				t.Fatalf("%s: the %s engine refuses the edited body %s: %v", body, name, out, err)
			}
			if got.Model != "priced" || got.Bounds["max_tokens"] != 5 {
				t.Fatalf("the %s engine reads %+v from the edited %s", name, got, out)
			}
			for k, v := range got.Bounds {
				if v != 5 {
					t.Fatalf("the %s engine reads %s = %d from the edited %s, over the 5 reserved", name, k, v, out)
				}
			}
		}
	})
}
