package catalogue_test

import (
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/helexa-ai/helexa-go/catalogue"
)

func mustNew(t testing.TB, models []catalogue.Model, aliases map[string]string) *catalogue.Catalogue {
	t.Helper()
	c, err := catalogue.New(models, aliases)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

func TestResolve(t *testing.T) {
	t.Parallel()
	c := mustNew(t, []catalogue.Model{
		{ID: "qwen2.5-32b-instruct", VRAMMB: 24576},
		{ID: "llama-3.1-8b-instruct", VRAMMB: 6144},
	}, map[string]string{"llama3.1": "llama-3.1-8b-instruct", "gpt-4o-mini": "qwen2.5-32b-instruct"})

	tests := []struct {
		name   string
		in     string
		want   string // resolved id
		wantOK bool
	}{
		{name: "id", in: "llama-3.1-8b-instruct", want: "llama-3.1-8b-instruct", wantOK: true},
		{name: "alias", in: "llama3.1", want: "llama-3.1-8b-instruct", wantOK: true},
		{name: "other alias", in: "gpt-4o-mini", want: "qwen2.5-32b-instruct", wantOK: true},
		{name: "unknown", in: "gpt-4o"},
		{name: "case matters", in: "Llama3.1"},
		{name: "empty", in: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, ok := c.Resolve(tt.in)
			if ok != tt.wantOK || m.ID != tt.want {
				t.Errorf("Resolve(%q) = %q, %v; want %q, %v", tt.in, m.ID, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestLookupIgnoresAliases(t *testing.T) {
	t.Parallel()
	c := mustNew(t, []catalogue.Model{{ID: "a"}}, map[string]string{"b": "a"})
	if m, ok := c.Lookup("a"); !ok || m.ID != "a" {
		t.Errorf(`Lookup("a") = %q, %v; want "a", true`, m.ID, ok)
	}
	if m, ok := c.Lookup("b"); ok {
		t.Errorf(`Lookup("b") = %q, true; want false (an alias)`, m.ID)
	}
}

func TestZeroAndNilCatalogue(t *testing.T) {
	t.Parallel()
	for name, c := range map[string]*catalogue.Catalogue{"zero": {}, "nil": nil} {
		if _, ok := c.Resolve("a"); ok {
			t.Errorf("%s: Resolve found a model", name)
		}
		if _, ok := c.Lookup("a"); ok {
			t.Errorf("%s: Lookup found a model", name)
		}
		if c.Len() != 0 || c.Models() != nil || len(c.Aliases()) != 0 {
			t.Errorf("%s: not empty", name)
		}
	}
}

func TestModelsSortedAndCopied(t *testing.T) {
	t.Parallel()
	read := 0.5
	c := mustNew(t, []catalogue.Model{
		{ID: "c", PinnedOn: []string{"n1"}},
		{ID: "a", Capabilities: []string{"chat"}, Cost: &catalogue.Cost{Input: 1, CacheRead: &read}},
		{ID: "b"},
	}, map[string]string{"x": "a"})

	got := c.Models()
	var ids []string
	for _, m := range got {
		ids = append(ids, m.ID)
	}
	if diff := cmp.Diff(ids, []string{"a", "b", "c"}); diff != "" {
		t.Fatalf("Models() ids (-got +want):\n%s", diff)
	}

	// Scribble over everything the caller got back.
	got[0].Capabilities[0] = "scribbled"
	got[0].Cost.Input = 99
	*got[0].Cost.CacheRead = 99
	got[2].PinnedOn[0] = "scribbled"
	c.Aliases()["x"] = "scribbled"

	a, _ := c.Resolve("x")
	if a.Capabilities[0] != "chat" || a.Cost.Input != 1 || *a.Cost.CacheRead != 0.5 {
		t.Errorf("Models() shares memory with the catalogue: %+v", a)
	}
	if m, _ := c.Resolve("c"); m.PinnedOn[0] != "n1" {
		t.Errorf("Models() shares PinnedOn with the catalogue: %v", m.PinnedOn)
	}
	if c.Aliases()["x"] != "a" {
		t.Errorf("Aliases() shares its map with the catalogue")
	}
}

func TestNewCopiesItsInputs(t *testing.T) {
	t.Parallel()
	read := 0.5
	models := []catalogue.Model{{ID: "a", PinnedOn: []string{"n1"}, Cost: &catalogue.Cost{Input: 1, CacheRead: &read}}}
	aliases := map[string]string{"x": "a"}
	c := mustNew(t, models, aliases)

	models[0].ID = "changed"
	models[0].PinnedOn[0] = "changed"
	models[0].Cost.Input = 2
	read = 2
	aliases["y"] = "a"

	m, ok := c.Resolve("x")
	if !ok {
		t.Fatal(`Resolve("x") found nothing after the input changed`)
	}
	want := catalogue.Model{ID: "a", PinnedOn: []string{"n1"}, ResidencyPriority: 1000, Cost: &catalogue.Cost{Input: 1, CacheRead: ptr(0.5)}}
	if diff := cmp.Diff(m, want); diff != "" {
		t.Errorf("Resolve(\"x\") (-got +want):\n%s", diff)
	}
	if _, ok := c.Resolve("y"); ok {
		t.Error(`Resolve("y") found an alias added after New`)
	}
}

func TestNewErrors(t *testing.T) {
	t.Parallel()
	nan := 0.0
	nan /= nan
	tests := []struct {
		name    string
		models  []catalogue.Model
		aliases map[string]string
		want    []string
		wantErr error
	}{
		{
			name:    "empty id",
			models:  []catalogue.Model{{ID: "a"}, {}},
			want:    []string{"models[1]: missing id"},
			wantErr: catalogue.ErrMissingID,
		},
		{
			name:    "duplicate id",
			models:  []catalogue.Model{{ID: "a"}, {ID: "b"}, {ID: "a"}},
			want:    []string{`models[2] (a): duplicate id "a" (first in models[0])`},
			wantErr: catalogue.ErrDuplicateID,
		},
		{
			name:    "negative int fields",
			models:  []catalogue.Model{{ID: "a", MinDevices: -1, Limit: catalogue.Limit{Output: -1}}},
			want:    []string{"models[0] (a): negative min_devices", "models[0] (a): negative limit.output"},
			wantErr: catalogue.ErrNegative,
		},
		{
			name:    "NaN price",
			models:  []catalogue.Model{{ID: "a", Cost: &catalogue.Cost{CacheWrite: &nan}}},
			want:    []string{"models[0] (a): cost.cache_write: not a finite number"},
			wantErr: catalogue.ErrInvalidValue,
		},
		{
			name:    "control character in id",
			models:  []catalogue.Model{{ID: "a\x00"}},
			want:    []string{`models[0] ("a\x00"): id "a\x00" has spaces or control characters`},
			wantErr: catalogue.ErrInvalidValue,
		},
		{
			name:    "invalid UTF-8 in a neuron name",
			models:  []catalogue.Model{{ID: "a", PinnedOn: []string{"\xff"}}},
			want:    []string{`models[0] (a): pinned_on[0] "\xff": empty, or has spaces or control characters`},
			wantErr: catalogue.ErrInvalidValue,
		},
		{
			name:    "aliases",
			models:  []catalogue.Model{{ID: "a"}, {ID: "b"}},
			aliases: map[string]string{"a": "b", "c": "d", "e": "f", "f": "a", "": "a"},
			want: []string{
				`aliases."": alias name is empty, or has spaces or control characters`,
				`aliases.a: alias shadows the model with id "a"`,
				`aliases.c: unknown model "d"`,
				`aliases.e: target "f" is itself an alias (of "a"); aliases resolve in one hop: point "e" at a model id`,
			},
			wantErr: catalogue.ErrAliasChain,
		},
		{
			name:    "alias to a model with an invalid id",
			models:  []catalogue.Model{{ID: "a b"}},
			aliases: map[string]string{"x": "a b"},
			want: []string{
				`models[0] ("a b"): id "a b" has spaces or control characters`,
				`aliases.x: unknown model "a b"`,
			},
			wantErr: catalogue.ErrUnknownModel,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := catalogue.New(tt.models, tt.aliases)
			if err == nil {
				t.Fatalf("New() = %v, nil; want an error", c)
			}
			var got []string
			for _, line := range strings.Split(err.Error(), "\n") {
				got = append(got, strings.TrimPrefix(line, "catalogue: "))
			}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("New() error (-got +want):\n%s", diff)
			}
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("errors.Is(%v, %v) = false", err, tt.wantErr)
			}
		})
	}
}

func TestErrorFormat(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   catalogue.Error
		want string
	}{
		{name: "everything", in: catalogue.Error{Path: "models.toml", Line: 12, Entry: "models[3] (x)", Msg: "negative vram_mb"}, want: "models.toml:12: models[3] (x): negative vram_mb"},
		{name: "no line", in: catalogue.Error{Path: "models.toml", Entry: "aliases.x", Msg: "m"}, want: "models.toml: aliases.x: m"},
		{name: "no path", in: catalogue.Error{Line: 3, Msg: "m"}, want: "line 3: m"},
		{name: "nothing", in: catalogue.Error{Msg: "m"}, want: "catalogue: m"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.in.Error(); got != tt.want {
				t.Errorf("Error() = %q; want %q", got, tt.want)
			}
		})
	}
}

func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	c, err := catalogue.Load(exampleFile)
	if err != nil {
		t.Fatal(err)
	}
	aliases := c.Aliases()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				for alias, id := range aliases {
					if m, ok := c.Resolve(alias); !ok || m.ID != id {
						t.Errorf("Resolve(%q) = %q, %v; want %q", alias, m.ID, ok, id)
						return
					}
				}
				_ = c.Models()
				_ = c.Aliases()
			}
		})
	}
	wg.Wait()
}

func TestResolveDoesNotAllocate(t *testing.T) {
	// Not parallel: AllocsPerRun counts allocations of the whole process.
	c, err := catalogue.Load(exampleFile)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"llama-3.1-8b-instruct", "gpt-4o-mini", "unknown-model"}
	var sink catalogue.Model
	allocs := testing.AllocsPerRun(100, func() {
		for _, n := range names {
			sink, _ = c.Resolve(n)
		}
	})
	_ = sink
	if allocs != 0 {
		t.Errorf("Resolve allocates %v times per run; want 0", allocs)
	}
}

func BenchmarkResolve(b *testing.B) {
	c, err := catalogue.Load(exampleFile)
	if err != nil {
		b.Fatal(err)
	}
	for _, bb := range []struct{ name, in string }{
		{"id", "qwen2.5-32b-instruct"},
		{"alias", "gpt-4o-mini"},
		{"miss", "gpt-4o"},
	} {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c.Resolve(bb.in)
			}
		})
	}
}

func TestReplicaBounds(t *testing.T) {
	t.Parallel()
	c, err := catalogue.Parse([]byte(`[[models]]
id = "fixed"

[[models]]
id = "min-only"
min_replicas = 2

[[models]]
id = "elastic"
min_replicas = 1
max_replicas = 4

[[models]]
id = "max-only"
max_replicas = 3
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		id     string
		scaled bool
		lo, hi int
	}{
		{"fixed", false, 0, 0},
		{"min-only", true, 2, 2},
		{"elastic", true, 1, 4},
		{"max-only", true, 0, 3},
	} {
		m, _ := c.Lookup(tt.id)
		lo, hi := m.ReplicaBounds()
		if m.Scaled() != tt.scaled || lo != tt.lo || hi != tt.hi {
			t.Errorf("%s: Scaled() = %v, ReplicaBounds() = %d, %d; want %v, %d, %d", tt.id, m.Scaled(), lo, hi, tt.scaled, tt.lo, tt.hi)
		}
	}
}
