package cortex_test

import (
	"testing"

	"github.com/helexa-ai/helexa-go/cortex"
)

func TestNeuronConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      cortex.NeuronConfig
		wantErr bool
	}{
		{name: "ok", in: cortex.NeuronConfig{Name: "gpu-1", Endpoint: "http://10.0.0.5:31400"}},
		{name: "https with path and token", in: cortex.NeuronConfig{Name: "gpu-1", Endpoint: "https://gpu1.internal/neuron", Token: "t"}},
		{name: "empty name", in: cortex.NeuronConfig{Endpoint: "http://h:1"}, wantErr: true},
		{name: "space in name", in: cortex.NeuronConfig{Name: "gpu 1", Endpoint: "http://h:1"}, wantErr: true},
		{name: "empty endpoint", in: cortex.NeuronConfig{Name: "n"}, wantErr: true},
		{name: "no scheme", in: cortex.NeuronConfig{Name: "n", Endpoint: "10.0.0.5:31400"}, wantErr: true},
		{name: "other scheme", in: cortex.NeuronConfig{Name: "n", Endpoint: "ftp://h"}, wantErr: true},
		{name: "no host", in: cortex.NeuronConfig{Name: "n", Endpoint: "http:///x"}, wantErr: true},
		{name: "query", in: cortex.NeuronConfig{Name: "n", Endpoint: "http://h:1/?a=b"}, wantErr: true},
		{name: "user info", in: cortex.NeuronConfig{Name: "n", Endpoint: "http://u:p@h:1"}, wantErr: true},
		{name: "unparsable", in: cortex.NeuronConfig{Name: "n", Endpoint: "http://h:port"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if err := tt.in.Validate(); (err != nil) != tt.wantErr {
				t.Errorf("Validate() = %v, wantErr %v", err, tt.wantErr)
			}
		})
	}
}
