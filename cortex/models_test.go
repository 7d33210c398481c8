package cortex_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/helexa-ai/helexa-go/catalogue"
	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/cortex/cortextest"
	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/neuron"
)

func TestModelsJoinsCatalogueAndFleet(t *testing.T) {
	t.Parallel()
	specs := []cortextest.Spec{
		{Name: "n1", Models: []neuron.LoadSpec{loadedSpec("chat-a", 4000)}},
		// A small neuron with a model the catalogue does not know.
		{Name: "n2", GPUs: []uint64{3000}, Models: []neuron.LoadSpec{{ModelID: "local-x", VRAMMB: 1000, Capabilities: []string{"chat"}}}},
		{Name: "n3", GPUs: []uint64{3000}},
	}
	s := newStack(t, specs, testCatalogue(t))
	s.fleet.Neuron("n3").Stop()
	s.refresh()
	resp := s.do(http.MethodGet, "/v1/models", "")
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	var got cortex.ModelList
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	for i := range got.Data {
		e := &got.Data[i]
		if e.Loaded != (e.Created != 0) {
			t.Errorf("%s: loaded %v, created %d", e.ID, e.Loaded, e.Created)
		}
		e.Created = 0
	}
	chatA := cortex.ModelEntry{
		ID: "chat-a", Object: "model", OwnedBy: "helexa", Loaded: true,
		Locations:    []cortex.ModelLocation{{Neuron: "n1", Status: neuron.StatusLoaded, VRAMMB: 4000, Healthy: true}},
		FeasibleOn:   []string{"n1"},
		Limit:        &catalogue.Limit{Context: 4096, Output: 64},
		Cost:         &catalogue.Cost{Input: 1, Output: 2},
		Capabilities: []string{"chat", "completions"},
		Aliases:      []string{"fast"},
	}
	fast := chatA
	fast.ID, fast.AliasOf, fast.Aliases = "fast", "chat-a", nil
	want := cortex.ModelList{Object: "list", Data: []cortex.ModelEntry{
		chatA,
		{ID: "chat-b", Object: "model", OwnedBy: "helexa", Locations: []cortex.ModelLocation{}, FeasibleOn: []string{"n1"}},
		{ID: "giant", Object: "model", OwnedBy: "helexa", Locations: []cortex.ModelLocation{}, FeasibleOn: []string{}},
		// n3 is down, but its hardware could hold the model.
		{ID: "tiny-context", Object: "model", OwnedBy: "helexa", Locations: []cortex.ModelLocation{}, FeasibleOn: []string{"n1", "n2", "n3"},
			Limit: &catalogue.Limit{Context: 16}},
		{ID: "local-x", Object: "model", OwnedBy: "helexa", Loaded: true,
			Locations:  []cortex.ModelLocation{{Neuron: "n2", Status: neuron.StatusLoaded, VRAMMB: 1000, Healthy: true}},
			FeasibleOn: []string{}, Limit: &catalogue.Limit{Context: 8192}, Capabilities: []string{"chat"}},
		fast,
	}}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("/v1/models (-got +want):\n%s", diff)
	}
}

func TestModelsRequiresAuthWhenConfigured(t *testing.T) {
	t.Parallel()
	local, err := entitlements.NewLocal(entitlements.Config{Keys: []entitlements.KeyConfig{{Key: "k", AccountID: "a"}}})
	if err != nil {
		t.Fatal(err)
	}
	s := newStack(t, cortextest.Named("n1"), testCatalogue(t), cortex.WithProvider(local), cortex.WithRequireAuth(true))
	for _, tt := range []struct {
		header []string
		want   int
	}{
		{nil, http.StatusUnauthorized},
		{[]string{"Authorization", "Bearer k"}, http.StatusOK},
	} {
		resp := s.do(http.MethodGet, "/v1/models", "", tt.header...)
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("header %q: status %d, want %d", tt.header, resp.StatusCode, tt.want)
		}
	}
	// /health stays public.
	resp := s.do(http.MethodGet, "/health", "")
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/health without a key: status %d", resp.StatusCode)
	}
}
