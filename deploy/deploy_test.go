// Package deploy holds the systemd units and sample configuration files of
// a production install; its test parses every sample, so that they keep up
// with the code.
package deploy_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/helexa-ai/helexa-go/catalogue"
	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/neuron"
)

func TestSampleConfigsParse(t *testing.T) {
	t.Parallel()
	c, err := cortex.LoadConfig("cortex.toml")
	if err != nil {
		t.Fatalf("cortex.toml: %v", err)
	}
	if len(c.Neurons) == 0 || !c.Entitlements.RequireAuth || len(c.Gateway.AdminKeysSHA256) == 0 {
		t.Errorf("cortex.toml: %+v", c)
	}
	cat, err := catalogue.Load(c.ModelsConfig)
	if err != nil {
		t.Fatalf("models.toml: %v", err)
	}
	for _, m := range cat.Models() {
		for _, p := range m.PinnedOn {
			if !hasNeuron(c.Neurons, p) {
				t.Errorf("models.toml: %s is pinned on %q, which cortex.toml does not list", m.ID, p)
			}
		}
	}
	nc, err := neuron.LoadConfig("neuron.toml")
	if err != nil {
		t.Fatalf("neuron.toml: %v", err)
	}
	if nc.Token != c.Neurons[0].Token {
		t.Errorf("neuron.toml's token %q is not gpu-01's in cortex.toml (%q)", nc.Token, c.Neurons[0].Token)
	}
}

func hasNeuron(ns []cortex.NeuronConfig, name string) bool {
	for _, n := range ns {
		if n.Name == name {
			return true
		}
	}
	return false
}

// The units run the binaries with the sample files' paths and stop the
// neuron as documented.
func TestUnits(t *testing.T) {
	t.Parallel()
	tests := []struct {
		unit string
		want []string
	}{
		{"cortex.service", []string{"ExecStart=/usr/local/bin/cortex serve --config /etc/helexa/cortex.toml", "Restart=on-failure", "NoNewPrivileges=yes", "ProtectSystem=strict", "LimitNOFILE="}},
		{"neuron.service", []string{"ExecStart=/usr/local/bin/neuron --config /etc/helexa/neuron.toml", "KillMode=mixed", "Restart=on-failure", "NoNewPrivileges=yes", "ProtectSystem=strict", "LimitNOFILE="}},
	}
	for _, tt := range tests {
		b, err := os.ReadFile(filepath.Join("systemd", tt.unit))
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range tt.want {
			if !strings.Contains(string(b), "\n"+w) {
				t.Errorf("%s lacks %q", tt.unit, w)
			}
		}
	}
}
