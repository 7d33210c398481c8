package main

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/helexa-ai/helexa-go/catalogue"
	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/internal/testout"
	"github.com/helexa-ai/helexa-go/neuron"
)

// Both neurons hold the model; the default Router would pick gpu-a (the
// first name among equally busy replicas), the zone router picks gpu-b.
func TestRunPrefersTheZone(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var out testout.Buffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, "127.0.0.1:0", &out) }()
	out.Wait(t, regexp.MustCompile(`served by`), done, 30*time.Second)
	if got := out.String(); !strings.Contains(got, "status 200, served by gpu-b") {
		t.Errorf("output %q, want a request served by gpu-b", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("run: %v", err)
	}
}

func TestZoneRouter(t *testing.T) {
	t.Parallel()
	disc := &neuron.Discovery{Devices: []neuron.Device{{Index: 0, TotalMB: 24576}}}
	loaded := cortex.ModelState{ModelInfo: neuron.ModelInfo{ID: "m", Status: neuron.StatusLoaded, VRAMUsedMB: 2048}}
	host := func(name string, healthy bool, models ...cortex.ModelState) cortex.NeuronState {
		return cortex.NeuronState{Name: name, Healthy: healthy, Discovery: disc, Models: models}
	}
	cat, err := catalogue.New([]catalogue.Model{{ID: "m", VRAMMB: 2048}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	def, err := cortex.NewRouter()
	if err != nil {
		t.Fatal(err)
	}
	r := zoneRouter{next: def, zones: map[string]string{"gpu-a": "us", "gpu-b": "eu"}, prefer: "eu"}
	tests := []struct {
		name    string
		in      []cortex.NeuronState
		want    cortex.Decision
		wantErr bool
	}{
		{"both loaded: the zone wins", []cortex.NeuronState{host("gpu-a", true, loaded), host("gpu-b", true, loaded)},
			cortex.Decision{Neuron: "gpu-b", Action: cortex.ActionServe}, false},
		{"the zone's neuron is down", []cortex.NeuronState{host("gpu-a", true, loaded), host("gpu-b", false, loaded)},
			cortex.Decision{Neuron: "gpu-a", Action: cortex.ActionServe}, false},
		{"loaded only elsewhere", []cortex.NeuronState{host("gpu-a", true, loaded), host("gpu-b", true)},
			cortex.Decision{Neuron: "gpu-a", Action: cortex.ActionServe}, false},
		{"cold: the default placement", []cortex.NeuronState{host("gpu-a", true), host("gpu-b", true)},
			cortex.Decision{Neuron: "gpu-a", Action: cortex.ActionLoad}, false},
		{"no healthy neuron", []cortex.NeuronState{host("gpu-a", false), host("gpu-b", false)}, cortex.Decision{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, err := cortex.NewFleet(cat, nil, time.Time{}, tt.in)
			if err != nil {
				t.Fatal(err)
			}
			d, err := r.Route(f, "m", cortex.RouteHint{})
			if (err != nil) != tt.wantErr {
				t.Fatalf("Route: %v, want error %v", err, tt.wantErr)
			}
			got := cortex.Decision{Neuron: d.Neuron, Action: d.Action}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("decision (-got +want):\n%s", diff)
			}
		})
	}
}
