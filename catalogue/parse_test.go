package catalogue_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/helexa-ai/helexa-go/catalogue"
)

const exampleFile = "../testdata/models.toml"

func ptr[T any](v T) *T { return &v }

func TestLoadExample(t *testing.T) {
	t.Parallel()
	c, err := catalogue.Load(exampleFile)
	if err != nil {
		t.Fatalf("Load(%s): %v", exampleFile, err)
	}
	want := []catalogue.Model{
		{
			ID:                "llama-3.1-8b-instruct",
			Engine:            "llama-server",
			Source:            "bartowski/Meta-Llama-3.1-8B-Instruct-GGUF:Q4_K_M",
			VRAMMB:            6144,
			MinDevices:        1,
			PinnedOn:          []string{"gpu-01"},
			ResidencyPriority: 1000,
			Capabilities:      []string{"chat", "completions", "tools"},
			Limit:             catalogue.Limit{Context: 8192, Output: 8192},
			EngineArgs:        catalogue.EngineArgs{Set: map[string]string{"--cache-type-k": "q8_0"}},
			Cost:              &catalogue.Cost{Input: 0.10, Output: 0.20, CacheRead: ptr(0.025)},
		},
		{
			ID:                "llama-3.2-1b-instruct",
			Engine:            "sim",
			VRAMMB:            1024,
			MinDevices:        1,
			ResidencyPriority: 100,
			Capabilities:      []string{"chat", "completions"},
			Limit:             catalogue.Limit{Context: 8192, Output: 2048},
			Cost:              &catalogue.Cost{},
		},
		{
			ID:                "nomic-embed-text-v1.5",
			Engine:            "llama-server",
			Source:            "nomic-ai/nomic-embed-text-v1.5-GGUF:Q8_0",
			VRAMMB:            1024,
			MinDevices:        1,
			ResidencyPriority: 100,
			Capabilities:      []string{"embeddings"},
			Limit:             catalogue.Limit{Context: 8192, Input: 8192},
			Cost:              &catalogue.Cost{Input: 0.02},
		},
		{
			ID:                "qwen2.5-32b-instruct",
			Engine:            "vllm",
			Source:            "Qwen/Qwen2.5-32B-Instruct-AWQ",
			VRAMMB:            24576,
			MinDevices:        2,
			MinDeviceVRAMMB:   16384,
			ResidencyPriority: 100,
			Capabilities:      []string{"chat", "completions", "tools"},
			Limit:             catalogue.Limit{Context: 32768, Output: 8192},
			Cost:              &catalogue.Cost{Input: 0.40, Output: 1.20},
		},
		{
			ID:                "qwen2.5-coder-7b-instruct",
			Engine:            "llama-server",
			Source:            "Qwen/Qwen2.5-Coder-7B-Instruct-GGUF:Q4_K_M",
			VRAMMB:            5120,
			MinDevices:        1,
			ResidencyPriority: 50,
			Capabilities:      []string{"chat", "completions"},
			Limit:             catalogue.Limit{Context: 32768, Output: 8192},
			IdleUnload:        10 * time.Minute,
		},
	}
	if diff := cmp.Diff(c.Models(), want); diff != "" {
		t.Errorf("Models() (-got +want):\n%s", diff)
	}
	wantAliases := map[string]string{
		"llama3.1":               "llama-3.1-8b-instruct",
		"qwen":                   "qwen2.5-32b-instruct",
		"gpt-4o-mini":            "qwen2.5-32b-instruct",
		"text-embedding-3-small": "nomic-embed-text-v1.5",
		"qwen-coder":             "qwen2.5-coder-7b-instruct",
	}
	if diff := cmp.Diff(c.Aliases(), wantAliases); diff != "" {
		t.Errorf("Aliases() (-got +want):\n%s", diff)
	}

	// The file promises that two simulated 24 GiB GPUs hold every model at
	// once; check each fits and that the sum does.
	devs := []uint64{24576, 24576}
	var sum uint64
	for _, m := range c.Models() {
		if !catalogue.Feasible(m, devs) {
			t.Errorf("%s does not fit two 24 GiB GPUs", m.ID)
		}
		sum += m.VRAMMB
	}
	if sum > 2*24576 {
		t.Errorf("models need %d MiB together, more than two 24 GiB GPUs", sum)
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    []string // every line of the error
		wantErr error    // a sentinel the error matches
	}{
		{
			name: "idle_unload not a duration",
			in: `[[models]]
id = "a"
idle_unload = 600

[[models]]
id = "b"
idle_unload = "-1m"
`,
			want: []string{
				`line 3: models[0] (a): idle_unload: 600 has no unit: write a string such as "600s"`,
				`line 7: models[1] (b): idle_unload: negative duration "-1m"`,
			},
			wantErr: catalogue.ErrSyntax,
		},
		{
			name: "idle_unload too short",
			in: `[[models]]
id = "c"
idle_unload = "5s"
`,
			want:    []string{`line 3: models[0] (c): idle_unload 5s is under 10s: a model would be unloaded between two requests`},
			wantErr: catalogue.ErrInvalidValue,
		},
		{
			name: "replica bounds",
			in: `[[models]]
id = "d"
min_replicas = -1

[[models]]
id = "e"
min_replicas = 3
max_replicas = 2
`,
			want: []string{
				`line 3: models[0] (d): negative min_replicas`,
				`line 8: models[1] (e): max_replicas 2 is under min_replicas 3`,
			},
			wantErr: catalogue.ErrInvalidValue,
		},
		{
			name: "typo'd field",
			in: `[[models]]
id = "llama-3-8b"
vram_gb = 6
`,
			want:    []string{`line 3: models[0] (llama-3-8b): unknown key "vram_gb"`},
			wantErr: catalogue.ErrUnknownField,
		},
		{
			name: "typo'd nested fields and table, all reported",
			in: `[[models]]
id = "a"
limit.contxt = 4096

[models.cost]
inptu = 1.0

[[models]]
id = "b"

[model]
id = "c"
`,
			want: []string{
				`line 3: models[0] (a): unknown key "limit.contxt"`,
				`line 6: models[0] (a): unknown key "cost.inptu"`,
				`line 11: unknown table "model"`,
			},
			wantErr: catalogue.ErrUnknownField,
		},
		{
			name:    "unknown top-level key",
			in:      "version = 2\n",
			want:    []string{`line 1: unknown key "version"`},
			wantErr: catalogue.ErrUnknownField,
		},
		{
			name: "wrong type",
			in: `[[models]]
id = "a"
vram_mb = "24G"
`,
			want:    []string{`line 3: models[0] (a): vram_mb: want an integer, got string`},
			wantErr: catalogue.ErrSyntax,
		},
		{
			name: "float where an integer belongs",
			in: `[[models]]
id = "a"
limit = { context = 8192.5 }
`,
			want:    []string{`line 3: models[0] (a): limit.context: want an integer, got float`},
			wantErr: catalogue.ErrSyntax,
		},
		{
			name:    "string in a list of strings",
			in:      "[[models]]\nid = \"a\"\npinned_on = [\"n1\", 2]\n",
			want:    []string{`line 3: models[0] (a): pinned_on: want an array of strings, got integer`},
			wantErr: catalogue.ErrSyntax,
		},
		{
			name:    "number for a table",
			in:      "[[models]]\nid = \"a\"\nlimit = 3\n",
			want:    []string{`line 3: models[0] (a): limit: want a table, got integer`},
			wantErr: catalogue.ErrSyntax,
		},
		{
			name:    "models not an array",
			in:      "models = 3\n",
			want:    []string{`line 1: models: want an array of tables, got integer`},
			wantErr: catalogue.ErrSyntax,
		},
		{
			name:    "alias to a table",
			in:      "[aliases]\nx = { y = \"z\" }\n",
			want:    []string{`line 2: aliases.x: want a string, got inline table`},
			wantErr: catalogue.ErrSyntax,
		},
		{
			name: "alias to a number",
			in: `[[models]]
id = "a"
[aliases]
b = 1
`,
			want:    []string{`line 4: aliases.b: want a string, got integer`},
			wantErr: catalogue.ErrSyntax,
		},
		{
			name:    "syntax error",
			in:      "[[models]]\nid = \n",
			want:    []string{`line 2: models[0]: unexpected character U+000A at start of value`},
			wantErr: catalogue.ErrSyntax,
		},
		{
			name: "number too large",
			in: `[[models]]
id = "a"
vram_mb = 99999999999999999999
`,
			want:    []string{`line 3: models[0] (a): vram_mb: decimal number is too large to fit in a 64-bit signed integer`},
			wantErr: catalogue.ErrSyntax,
		},
		{
			name: "key defined twice",
			in: `[[models]]
id = "a"
id = "b"
`,
			want:    []string{`line 3: models[0] (a): key id is already defined`},
			wantErr: catalogue.ErrSyntax,
		},
		{
			name: "negative numbers",
			in: `[[models]]
id = "qwen2.5-7b"

[[models]]
id = "a"

[[models]]
id = "b"

[[models]]
id = "llama-3-8b"
vram_mb = -1
min_device_vram_mb = -2
min_devices = -3
residency_priority = -4
limit = { context = -5, input = -6, output = -7 }
cost = { input = -0.5, output = 1, cache_read = -1, cache_write = -2 }
`,
			want: []string{
				`line 12: models[3] (llama-3-8b): negative vram_mb`,
				`line 13: models[3] (llama-3-8b): negative min_device_vram_mb`,
				`line 14: models[3] (llama-3-8b): negative min_devices`,
				`line 15: models[3] (llama-3-8b): negative residency_priority`,
				`line 16: models[3] (llama-3-8b): negative limit.context`,
				`line 16: models[3] (llama-3-8b): negative limit.input`,
				`line 16: models[3] (llama-3-8b): negative limit.output`,
				`line 17: models[3] (llama-3-8b): negative cost.input`,
				`line 17: models[3] (llama-3-8b): negative cost.cache_read`,
				`line 17: models[3] (llama-3-8b): negative cost.cache_write`,
			},
			wantErr: catalogue.ErrNegative,
		},
		{
			name: "negative in a sub-table",
			in: `[[models]]
id = "a"

[models.cost]
input = 1
output = -1
`,
			want:    []string{`line 6: models[0] (a): negative cost.output`},
			wantErr: catalogue.ErrNegative,
		},
		{
			name: "price not finite",
			in: `[[models]]
id = "a"
cost = { input = nan, output = inf }
`,
			want: []string{
				`line 3: models[0] (a): cost.input: not a finite number`,
				`line 3: models[0] (a): cost.output: not a finite number`,
			},
			wantErr: catalogue.ErrInvalidValue,
		},
		{
			name: "price too high",
			in: `[[models]]
id = "a"
cost.input = 1e10
`,
			want:    []string{`line 3: models[0] (a): cost.input: above 1e+09 USD per 1M tokens`},
			wantErr: catalogue.ErrInvalidValue,
		},
		{
			name: "missing id",
			in: `[[models]]
id = "a"

[[models]]
engine = "vllm"
`,
			want:    []string{`line 4: models[1]: missing id`},
			wantErr: catalogue.ErrMissingID,
		},
		{
			name: "id with a space",
			in: `[[models]]
id = "llama 3"
`,
			want:    []string{`line 2: models[0] ("llama 3"): id "llama 3" has spaces or control characters`},
			wantErr: catalogue.ErrInvalidValue,
		},
		{
			name: "empty list elements",
			in: `[[models]]
id = "a"
pinned_on = [""]
capabilities = ["chat", ""]
`,
			want: []string{
				`line 3: models[0] (a): pinned_on[0] "": empty, or has spaces or control characters`,
				`line 4: models[0] (a): capabilities[1] "": empty, or has spaces or control characters`,
			},
			wantErr: catalogue.ErrInvalidValue,
		},
		{
			name: "duplicate id",
			in: `[[models]]
id = "llama-3-8b"

[[models]]
id = "qwen"

[[models]]
engine = "vllm"
id = "llama-3-8b"
`,
			want:    []string{`line 9: models[2] (llama-3-8b): duplicate id "llama-3-8b" (first in models[0])`},
			wantErr: catalogue.ErrDuplicateID,
		},
		{
			name: "alias to unknown model",
			in: `[[models]]
id = "a"

[aliases]
fast = "b"
`,
			want:    []string{`line 5: aliases.fast: unknown model "b"`},
			wantErr: catalogue.ErrUnknownModel,
		},
		{
			name: "alias shadows an id",
			in: `[[models]]
id = "a"

[[models]]
id = "b"

[aliases]
a = "b"
`,
			want:    []string{`line 8: aliases.a: alias shadows the model with id "a"`},
			wantErr: catalogue.ErrAliasShadowsID,
		},
		{
			name: "alias to an alias",
			in: `[[models]]
id = "a"

[aliases]
fast = "a"
"fast.v2" = "fast"
`,
			want:    []string{`line 6: aliases."fast.v2": target "fast" is itself an alias (of "a"); aliases resolve in one hop: point "fast.v2" at a model id`},
			wantErr: catalogue.ErrAliasChain,
		},
		{
			name: "alias as an inline table",
			in: `aliases = { x = "y" }
`,
			want:    []string{`line 1: aliases.x: unknown model "y"`},
			wantErr: catalogue.ErrUnknownModel,
		},
		{
			name: "alias as a dotted key",
			in: `aliases.x = "y"
`,
			want:    []string{`line 1: aliases.x: unknown model "y"`},
			wantErr: catalogue.ErrUnknownModel,
		},
		{
			name: "empty alias name",
			in: `[[models]]
id = "a"
[aliases]
"" = "a"
`,
			want:    []string{`line 4: aliases."": alias name is empty, or has spaces or control characters`},
			wantErr: catalogue.ErrInvalidValue,
		},
		{
			name: "unknown field and bad values together",
			in: `[[models]]
id = "a"
vram_gb = 1
vram_mb = -1

[aliases]
b = "c"
`,
			want: []string{
				`line 3: models[0] (a): unknown key "vram_gb"`,
				`line 4: models[0] (a): negative vram_mb`,
				`line 7: aliases.b: unknown model "c"`,
			},
			wantErr: catalogue.ErrNegative,
		},
		{
			name: "models written inline",
			in: `models = [
  { id = "a", vram_mb = -1 },
]
`,
			want:    []string{`models[0] (a): negative vram_mb`},
			wantErr: catalogue.ErrNegative,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := catalogue.Parse([]byte(tt.in))
			if err == nil {
				t.Fatalf("Parse() = %v, nil; want an error", c)
			}
			if c != nil {
				t.Errorf("Parse() returned a catalogue with its error")
			}
			got := strings.Split(err.Error(), "\n")
			for i, line := range got {
				got[i] = strings.TrimPrefix(line, "catalogue: ")
			}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("Parse() error (-got +want):\n%s", diff)
			}
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("errors.Is(%v, %v) = false", err, tt.wantErr)
			}
			var ce *catalogue.Error
			if !errors.As(err, &ce) {
				t.Errorf("errors.As(%v, *catalogue.Error) = false", err)
			}
		})
	}
}

func TestParseDefaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want catalogue.Model
	}{
		{
			name: "bare",
			in:   `id = "a"`,
			want: catalogue.Model{ID: "a", ResidencyPriority: 100},
		},
		{
			name: "vram implies one device",
			in:   "id = \"a\"\nvram_mb = 1",
			want: catalogue.Model{ID: "a", VRAMMB: 1, MinDevices: 1, ResidencyPriority: 100},
		},
		{
			name: "pinned",
			in:   "id = \"a\"\npinned_on = [\"n1\"]",
			want: catalogue.Model{ID: "a", PinnedOn: []string{"n1"}, ResidencyPriority: 1000},
		},
		{
			name: "explicit priority on a pinned model",
			in:   "id = \"a\"\npinned_on = [\"n1\"]\nresidency_priority = 7",
			want: catalogue.Model{ID: "a", PinnedOn: []string{"n1"}, ResidencyPriority: 7},
		},
		{
			name: "empty cost table is free",
			in:   "id = \"a\"\ncost = {}",
			want: catalogue.Model{ID: "a", ResidencyPriority: 100, Cost: &catalogue.Cost{}},
		},
		{
			name: "integer prices",
			in:   "id = \"a\"\ncost = { input = 1, output = 2, cache_write = 3 }",
			want: catalogue.Model{ID: "a", ResidencyPriority: 100, Cost: &catalogue.Cost{Input: 1, Output: 2, CacheWrite: ptr(3.0)}},
		},
		{
			name: "explicit devices",
			in:   "id = \"a\"\nmin_devices = 4",
			want: catalogue.Model{ID: "a", MinDevices: 4, ResidencyPriority: 100},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := catalogue.Parse([]byte("[[models]]\n" + tt.in + "\n"))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if diff := cmp.Diff(c.Models(), []catalogue.Model{tt.want}); diff != "" {
				t.Errorf("Models() (-got +want):\n%s", diff)
			}
		})
	}
}

func TestParseEmpty(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"", "# nothing\n", "[aliases]\n", "models = []\n"} {
		c, err := catalogue.Parse([]byte(in))
		if err != nil {
			t.Fatalf("Parse(%q): %v", in, err)
		}
		if c.Len() != 0 || len(c.Aliases()) != 0 {
			t.Errorf("Parse(%q) = %d models, %d aliases; want none", in, c.Len(), len(c.Aliases()))
		}
	}
}

func TestLoadErrorNamesThePath(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "models.toml")
	doc := "[[models]]\nid = \"a\"\n\n[[models]]\nid = \"b\"\nvram_gb = 6\n"
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := catalogue.Load(path)
	want := path + `:6: models[1] (b): unknown key "vram_gb"`
	if err == nil || err.Error() != want {
		t.Fatalf("Load() error = %v; want %s", err, want)
	}
	var ce *catalogue.Error
	if !errors.As(err, &ce) {
		t.Fatalf("errors.As(%v, *catalogue.Error) = false", err)
	}
	want2 := catalogue.Error{Path: path, Line: 6, Entry: "models[1] (b)", Msg: `unknown key "vram_gb"`, Err: catalogue.ErrUnknownField}
	if diff := cmp.Diff(*ce, want2, cmp.Comparer(func(a, b error) bool { return a == b })); diff != "" {
		t.Errorf("*Error (-got +want):\n%s", diff)
	}
}

func TestLoadMissingFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "absent.toml")
	_, err := catalogue.Load(path)
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Load(%s) error = %v; want os.ErrNotExist", path, err)
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("Load() error %q does not name %s", err, path)
	}
}

func TestParseEngineArgs(t *testing.T) {
	t.Parallel()
	c, err := catalogue.Parse([]byte(`
[[models]]
id = "a"
limit = { context = 8192 }
[models.engine_args]
extra = ["--override-kv", "llama.context_length=int:16384", "{{ bos_token }}"]
set = { "--n-gpu-layers" = "40", "-c" = "4096" }
`))
	if err != nil {
		t.Fatal(err)
	}
	m, _ := c.Lookup("a")
	want := catalogue.EngineArgs{Extra: []string{"--override-kv", "llama.context_length=int:16384", "{{ bos_token }}"},
		Set: map[string]string{"--n-gpu-layers": "40", "-c": "4096"}}
	if diff := cmp.Diff(m.EngineArgs, want); diff != "" {
		t.Errorf("engine_args (-got +want):\n%s", diff)
	}

	_, err = catalogue.Parse([]byte(`[[models]]
id = "b"
[models.engine_args]
extra = ["--port", "1", "x{model}y", "--ctx-size=1"]
[models.engine_args.set]
"--host" = "0.0.0.0"
"ctx" = "1"
"--ctx-size" = "2"
"--x" = "a\u0000b"
`))
	want2 := []string{
		`4: models[0] (b): engine_args.extra[0]: --port is set by the neuron`,
		`4: models[0] (b): engine_args.extra[2]: holds the placeholder {model}`,
		`4: models[0] (b): engine_args.extra[3]: --ctx-size is also in set`,
		`6: models[0] (b): engine_args.set.--host: --host is set by the neuron`,
		`7: models[0] (b): engine_args.set.ctx: "ctx" is not a flag`,
		`9: models[0] (b): engine_args.set.--x: holds a NUL byte`,
	}
	for _, w := range want2 {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("errors %v\nwant one containing %q", err, w)
		}
	}
	if !errors.Is(err, catalogue.ErrInvalidValue) {
		t.Errorf("errors.Is(err, ErrInvalidValue) = false: %v", err)
	}
}
