package neuron_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/helexa-ai/helexa-go/neuron"
)

func TestLoadConfig_Example(t *testing.T) {
	t.Parallel()
	c, err := neuron.LoadConfig(filepath.Join("..", "testdata", "neuron.toml"))
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	h100 := func(i int, uuid string) neuron.Device {
		return neuron.Device{Index: i, Name: "NVIDIA H100 80GB HBM3", UUID: uuid, TotalMB: 81559, ComputeCapability: "9.0"}
	}
	vllm := func(name, tp string) neuron.EngineConfig {
		return neuron.EngineConfig{
			Name: name,
			Command: []string{"vllm", "serve", "{model}", "--served-model-name", "{id}", "--host", "{host}",
				"--port", "{port}", "--max-model-len", "{context?}", "--tensor-parallel-size", tp},
			Env:              map[string]string{"VLLM_WORKER_MULTIPROC_METHOD": "spawn"},
			ReadyPath:        "/health",
			StartTimeout:     neuron.Duration(20 * time.Minute),
			StopTimeout:      neuron.Duration(10 * time.Second),
			LivenessInterval: neuron.Duration(5 * time.Second), LivenessTimeout: neuron.Duration(3 * time.Second), LivenessFailures: 3,
		}
	}
	want := neuron.Config{
		Listen:       "0.0.0.0:31400",
		AdvertiseURL: "http://10.0.0.5:31400",
		Token:        "change-me",
		DrainTimeout: neuron.Duration(30 * time.Second),
		Discovery: neuron.DiscoveryConfig{Kind: "static", Hostname: "gpu-node-01", Devices: []neuron.Device{
			h100(0, "GPU-00000000-0000-0000-0000-000000000000"),
			h100(1, "GPU-11111111-1111-1111-1111-111111111111"),
		}},
		DefaultEngine: "llama-server",
		Admission:     neuron.AdmissionConfig{MaxInFlight: 4, MaxQueue: 64, MaxWait: neuron.Duration(30 * time.Second)},
		Engines: []neuron.EngineConfig{
			{
				Name: "llama-server",
				Command: []string{"llama-server", "--model", "{model}", "--alias", "{id}", "--host", "{host}", "--port", "{port}",
					"--ctx-size", "{context?}", "--n-gpu-layers", "999", "--kv-unified"},
				ReadyPath:        "/health",
				StartTimeout:     neuron.Duration(10 * time.Minute),
				StopTimeout:      neuron.Duration(10 * time.Second),
				LivenessInterval: neuron.Duration(10 * time.Second), LivenessTimeout: neuron.Duration(5 * time.Second), LivenessFailures: 3,
			},
			vllm("vllm", "1"),
			vllm("vllm-tp2", "2"),
			{
				Name:             "sim",
				Command:          []string{"helexa-sim", "--host", "{host}", "--port", "{port}", "--model", "{id}"},
				ReadyPath:        "/health",
				StartTimeout:     neuron.Duration(30 * time.Second),
				StopTimeout:      neuron.Duration(10 * time.Second),
				LivenessInterval: neuron.Duration(5 * time.Second), LivenessTimeout: neuron.Duration(3 * time.Second), LivenessFailures: 3,
			},
		},
		DefaultModels: []neuron.LoadSpec{
			{ModelID: "llama-3.1-8b-instruct", Engine: "llama-server", Source: "/models/Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf",
				VRAMMB: 9000, Context: 8192, Capabilities: []string{"chat", "completions"}, Limit: neuron.Limit{Context: 8192, Output: 4096}},
			{ModelID: "qwen2.5-72b-instruct", Engine: "vllm-tp2", Source: "Qwen/Qwen2.5-72B-Instruct-AWQ",
				Devices: []int{0, 1}, VRAMMB: 120000, Context: 32768},
		},
	}
	if diff := cmp.Diff(c, want); diff != "" {
		t.Errorf("config (-got +want):\n%s", diff)
	}
	if n := len(c.AgentOptions()); n == 0 {
		t.Error("no agent options")
	}
	if _, err := neuron.NewAgent(&fakeHarness{}, neuron.NewStaticDiscoverer(c.StaticDiscovery()), c.AgentOptions()...); err != nil {
		t.Errorf("NewAgent with the example's options: %v", err)
	}
}

func TestParseConfig_Defaults(t *testing.T) {
	t.Parallel()
	c, err := neuron.ParseConfig([]byte("[[engines]]\nname = \"sim\"\ncommand = [\"helexa-sim\"]\n[admission]\nmax_queue = -1\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := neuron.Config{
		Listen:        neuron.DefaultListen,
		Discovery:     neuron.DiscoveryConfig{Kind: neuron.DiscoveryNVML},
		DefaultEngine: "sim",
		DrainTimeout:  neuron.Duration(neuron.DefaultDrainTimeout),
		Admission:     neuron.AdmissionConfig{MaxInFlight: 4, MaxQueue: -1, MaxWait: neuron.Duration(30 * time.Second)},
		Engines: []neuron.EngineConfig{{Name: "sim", Command: []string{"helexa-sim"}, ReadyPath: "/health",
			StartTimeout: neuron.Duration(10 * time.Minute), StopTimeout: neuron.Duration(10 * time.Second),
			LivenessInterval: neuron.Duration(neuron.DefaultLivenessInterval), LivenessTimeout: neuron.Duration(neuron.DefaultLivenessTimeout),
			LivenessFailures: neuron.DefaultLivenessFailures}},
	}
	if diff := cmp.Diff(c, want); diff != "" {
		t.Errorf("config (-got +want):\n%s", diff)
	}
}

func TestParseConfig_ErrorsHaveLines(t *testing.T) {
	t.Parallel()
	const engines = "[[engines]]\nname = \"sim\"\ncommand = [\"x\"]\n"
	tests := []struct {
		name     string
		in       string
		wantLine int
		wantMsg  string
	}{
		{name: "unknown top-level key", in: "listen = \"a:1\"\nlisten_addr = \"b\"\n" + engines, wantLine: 2, wantMsg: "listen_addr"},
		{name: "unknown key in a table", in: engines + "[admission]\nmax_inflight = 3\n", wantLine: 5, wantMsg: "admission.max_inflight"},
		{name: "unknown key in an array table", in: engines + "ready = \"/\"\n", wantLine: 4, wantMsg: "ready"},
		{name: "bad duration", in: "drain_timeout = \"soon\"\n" + engines, wantLine: 1, wantMsg: "soon"},
		{name: "wrong type", in: engines + "[admission]\nmax_in_flight = \"four\"\n", wantLine: 5, wantMsg: "max_in_flight"},
		{name: "syntax", in: "listen = \n", wantLine: 1},
		{name: "negative VRAM", in: engines + "[[default_models]]\nmodel_id = \"a\"\nvram_mb = -5\n", wantLine: 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := neuron.ParseConfig([]byte(tt.in))
			var ce *neuron.ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is not a *ConfigError", err)
			}
			if ce.Line != tt.wantLine {
				t.Errorf("line = %d, want %d (%v)", ce.Line, tt.wantLine, err)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not mention %q", err, tt.wantMsg)
			}
		})
	}
}

func TestParseConfig_Validate(t *testing.T) {
	t.Parallel()
	const sim = "[[engines]]\nname = \"sim\"\ncommand = [\"helexa-sim\"]\n"
	tests := []struct {
		name    string
		in      string
		wantErr string
	}{
		{name: "no engines", in: "", wantErr: "no [[engines]]"},
		{name: "engine without name", in: "[[engines]]\ncommand = [\"x\"]\n", wantErr: "engines[0]: name is required"},
		{name: "duplicate engine", in: sim + sim, wantErr: `engines[1]: duplicate name "sim"`},
		{name: "empty command", in: "[[engines]]\nname = \"e\"\ncommand = []\n", wantErr: `engines[0] ("e"): command is empty`},
		{name: "relative ready path", in: sim + "ready_path = \"health\"\n", wantErr: "ready_path"},
		{name: "unknown default engine", in: "default_engine = \"vllm\"\n" + sim, wantErr: `default_engine "vllm"`},
		{name: "default model without id", in: sim + "[[default_models]]\nengine = \"sim\"\n", wantErr: "default_models[0]: model_id is required"},
		{name: "default model with an unknown engine", in: sim + "[[default_models]]\nmodel_id = \"a\"\nengine = \"x\"\n", wantErr: `default_models[0] ("a"): engine "x"`},
		{name: "duplicate default model", in: sim + "[[default_models]]\nmodel_id = \"a\"\n[[default_models]]\nmodel_id = \"a\"\n", wantErr: `default_models[1]: duplicate model_id "a"`},
		{name: "static without devices", in: sim + "[discovery]\nkind = \"static\"\n", wantErr: "needs at least one [[discovery.devices]]"},
		{name: "nvml with devices", in: sim + "[[discovery.devices]]\nindex = 0\ntotal_mb = 1\n", wantErr: "devices are only for kind"},
		{name: "unknown discovery kind", in: sim + "[discovery]\nkind = \"rocm\"\n", wantErr: `kind "rocm"`},
		{name: "duplicate device", in: sim + "[discovery]\nkind = \"static\"\n[[discovery.devices]]\nindex = 0\ntotal_mb = 1\n[[discovery.devices]]\nindex = 0\ntotal_mb = 1\n", wantErr: "discovery.devices[1]: duplicate index 0"},
		{name: "device without memory", in: sim + "[discovery]\nkind = \"static\"\n[[discovery.devices]]\nindex = 0\n", wantErr: "total_mb is required"},
		{name: "default model on a missing device", in: sim + "[discovery]\nkind = \"static\"\n[[discovery.devices]]\nindex = 0\ntotal_mb = 1\n[[default_models]]\nmodel_id = \"a\"\ndevices = [3]\n", wantErr: "device 3"},
		{name: "negative admission", in: sim + "[admission]\nmax_in_flight = -1\n", wantErr: "admission: max_in_flight -1"},
		{name: "bad advertise URL", in: "advertise_url = \"10.0.0.5\"\n" + sim, wantErr: "advertise_url"},
		{name: "empty listen", in: "listen = \"\"\n" + sim, wantErr: "listen is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := neuron.ParseConfig([]byte(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestLoadConfig_NamesTheFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "bad.toml")
	if err := os.WriteFile(path, []byte("bogus = 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := neuron.LoadConfig(path)
	if err == nil || !strings.HasPrefix(err.Error(), path+":1: ") {
		t.Errorf("error = %v, want it to start with %s:1: ", err, path)
	}
	if _, err := neuron.LoadConfig(filepath.Join(t.TempDir(), "missing.toml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v, want os.ErrNotExist", err)
	}
}

// TestParseConfig_BareDuration checks that a duration written as a bare
// number, which go-toml would read as nanoseconds, is refused with its
// key, its line and the string to write instead.
func TestParseConfig_BareDuration(t *testing.T) {
	t.Parallel()
	const engines = "[[engines]]\nname = \"sim\"\ncommand = [\"x\"]\n"
	tests := []struct {
		name string
		in   string
		want string
	}{
		{name: "drain_timeout", in: "drain_timeout = 30\n" + engines, want: `neuron.toml:1: drain_timeout: 30 has no unit: write a string such as "30s"`},
		{name: "engine start_timeout", in: engines + "start_timeout = 600\n", want: `neuron.toml:4: engines.start_timeout: 600 has no unit: write a string such as "600s"`},
		{name: "liveness_interval", in: engines + "liveness_interval = 5\n", want: `neuron.toml:4: engines.liveness_interval: 5 has no unit: write a string such as "5s"`},
		{name: "max_wait", in: engines + "[admission]\nmax_wait = 2\n", want: `neuron.toml:5: admission.max_wait: 2 has no unit: write a string such as "2s"`},
		{name: "unknown key", in: engines + "bogus = 1\n", want: `neuron.toml:4: unknown key "engines.bogus"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := neuron.ParseConfig([]byte(tt.in))
			if err == nil || err.Error() != tt.want {
				t.Errorf("ParseConfig error = %v, want %s", err, tt.want)
			}
		})
	}
}
