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
	"github.com/helexa-ai/helexa-go/cortex/route"
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
	loaded := route.ModelState{ModelInfo: neuron.ModelInfo{ID: "m", Status: neuron.StatusLoaded, VRAMUsedMB: 2048}}
	busy := loaded
	busy.InFlight = 7
	host := func(name string, healthy bool, models ...route.ModelState) route.NeuronState {
		return route.NeuronState{Name: name, Healthy: healthy, Discovery: disc, Models: models}
	}
	cat, err := catalogue.New([]catalogue.Model{{ID: "m", VRAMMB: 2048}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := newZoneRouter(map[string]string{"gpu-a": "us", "gpu-b": "eu"}, "eu")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		in      []route.NeuronState
		want    route.Decision
		wantErr bool
	}{
		{"both loaded: the zone wins", []route.NeuronState{host("gpu-a", true, loaded), host("gpu-b", true, loaded)},
			route.Decision{Neuron: "gpu-b", Action: route.ActionServe}, false},
		{"the zone's neuron is down", []route.NeuronState{host("gpu-a", true, loaded), host("gpu-b", false, loaded)},
			route.Decision{Neuron: "gpu-a", Action: route.ActionServe}, false},
		{"loaded only elsewhere", []route.NeuronState{host("gpu-a", true, loaded), host("gpu-b", true)},
			route.Decision{Neuron: "gpu-a", Action: route.ActionServe}, false},
		{"both loaded, the zone's busier: the zone still wins", []route.NeuronState{host("gpu-a", true, loaded), host("gpu-b", true, busy)},
			route.Decision{Neuron: "gpu-b", Action: route.ActionServe}, false},
		{"cold: loaded in the zone", []route.NeuronState{host("gpu-a", true), host("gpu-b", true)},
			route.Decision{Neuron: "gpu-b", Action: route.ActionLoad}, false},
		{"cold, the zone's neuron is down: loaded elsewhere", []route.NeuronState{host("gpu-a", true), host("gpu-b", false)},
			route.Decision{Neuron: "gpu-a", Action: route.ActionLoad}, false},
		{"no healthy neuron", []route.NeuronState{host("gpu-a", false), host("gpu-b", false)}, route.Decision{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, err := route.NewFleet(cat, nil, time.Time{}, tt.in)
			if err != nil {
				t.Fatal(err)
			}
			d, err := r.Route(f, &route.Request{Model: "m"})
			if (err != nil) != tt.wantErr {
				t.Fatalf("Route: %v, want error %v", err, tt.wantErr)
			}
			got := route.Decision{Neuron: d.Neuron, Action: d.Action}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("decision (-got +want):\n%s", diff)
			}
		})
	}
}

// --listen sets the gateway's address; without it the gateway listens on
// cortex.DefaultListen.
func TestListenFlag(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    []string
		want    string
		wantErr bool
	}{
		{"default", nil, cortex.DefaultListen, false},
		{"set", []string{"--listen", "0.0.0.0:8080"}, "0.0.0.0:8080", false},
		{"set with =", []string{"-listen=127.0.0.1:0"}, "127.0.0.1:0", false},
		{"unknown flag", []string{"--port", "1"}, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseFlags(tt.args)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseFlags(%q) error %v, want error %v", tt.args, err, tt.wantErr)
			}
			if !tt.wantErr && got != tt.want {
				t.Errorf("parseFlags(%q) = %q, want %q", tt.args, got, tt.want)
			}
		})
	}
}
