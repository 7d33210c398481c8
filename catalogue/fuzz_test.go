package catalogue_test

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/helexa-ai/helexa-go/catalogue"
)

func FuzzParse(f *testing.F) {
	example, err := os.ReadFile(exampleFile)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example)
	for _, s := range []string{
		"",
		"[[models]]\nid = \"a\"\nvram_gb = 1\n",
		"[[models]]\nid = \"a\"\nvram_mb = -1\n[models.cost]\ninput = nan\n",
		"[[models]]\nid = \"a\"\n[[models]]\nid = \"a\"\n[aliases]\nb = \"a\"\nc = \"b\"\na = \"a\"\n",
		"models = [{ id = \"a\", limit = { context = 1.5 } }]\naliases = { x = \"a\" }\n",
		"aliases.x = \"y\"\n[[models]]\nid = 'y'\nid = 'z'\n",
		"[[models]]\nid = \"\"\npinned_on = [\"\", \"n1\"]\n[models.limit]\ncontext = -1\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := catalogue.Parse(data)
		if err != nil {
			if c != nil {
				t.Fatalf("Parse returned a catalogue and the error %v", err)
			}
			var ce *catalogue.Error
			if !errors.As(err, &ce) {
				t.Fatalf("Parse error %v (%T) is not a *catalogue.Error", err, err)
			}
			return
		}
		models := c.Models()
		if !slices.IsSortedFunc(models, func(a, b catalogue.Model) int { return strings.Compare(a.ID, b.ID) }) {
			t.Fatalf("Models() not sorted by id")
		}
		for _, m := range models {
			got, ok := c.Resolve(m.ID)
			if !ok || got.ID != m.ID {
				t.Fatalf("Resolve(%q) = %q, %v", m.ID, got.ID, ok)
			}
			if m.ResidencyPriority <= 0 || (m.VRAMMB > 0 && m.MinDevices < 1) {
				t.Fatalf("defaults not applied: %+v", m)
			}
		}
		for alias, id := range c.Aliases() {
			m, ok := c.Resolve(alias)
			if !ok || m.ID != id {
				t.Fatalf("alias %q -> %q resolves to %q, %v", alias, id, m.ID, ok)
			}
			if _, ok := c.Lookup(alias); ok {
				t.Fatalf("alias %q is also a model id", alias)
			}
		}
		// What Parse accepts, New accepts too and builds the same.
		again, err := catalogue.New(models, c.Aliases())
		if err != nil {
			t.Fatalf("New rejects what Parse accepted: %v", err)
		}
		if again.Len() != c.Len() {
			t.Fatalf("New built %d models from %d", again.Len(), c.Len())
		}
	})
}

func FuzzOutputTokensFor(f *testing.F) {
	f.Add(0.6, int64(1))
	f.Add(15.0, int64(10_000))
	f.Add(1e-9, int64(1<<62))
	f.Fuzz(func(t *testing.T, price float64, budget int64) {
		checkOutputTokensFor(t, price, budget)
	})
}
