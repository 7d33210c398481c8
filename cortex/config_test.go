package cortex_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/helexa-ai/helexa-go/catalogue"
	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/neuron"
)

func TestLoadExampleConfig(t *testing.T) {
	t.Parallel()
	path := filepath.Join("..", "testdata", "cortex.toml")
	c, err := cortex.LoadConfig(path)
	if err != nil {
		t.Fatalf("LoadConfig(%s): %v", path, err)
	}
	want := cortex.GatewayConfig{
		Listen:            "127.0.0.1:31313",
		MetricsListen:     "127.0.0.1:31314",
		StreamIdleTimeout: neuron.Duration(5 * time.Minute),
		MaxBodyBytes:      16 << 20,
		BodyReadTimeout:   neuron.Duration(time.Minute),
		LoadTimeout:       neuron.Duration(10 * time.Minute),
		PollInterval:      neuron.Duration(2 * time.Second),
		FailureThreshold:  3,
		SettleOutbox:      filepath.Join("..", "testdata", "cortex-settles.jsonl"),
		SettleRetryWindow: neuron.Duration(24 * time.Hour),
	}
	if diff := cmp.Diff(c.Gateway, want); diff != "" {
		t.Errorf("gateway (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(c.Neurons, []cortex.NeuronConfig{
		{Name: "gpu-01", Endpoint: "http://10.0.0.11:31400", Token: "neuron-token-gpu-01"},
		{Name: "gpu-02", Endpoint: "http://10.0.0.12:31400", Token: "neuron-token-gpu-02"},
	}); diff != "" {
		t.Errorf("neurons (-got +want):\n%s", diff)
	}
	if want := filepath.Join("..", "testdata", "models.toml"); c.ModelsConfig != want {
		t.Errorf("models_config = %q, want %q", c.ModelsConfig, want)
	}
	// The catalogue it names loads, and pins on the neurons it names.
	cat, err := catalogue.Load(c.ModelsConfig)
	if err != nil {
		t.Fatal(err)
	}
	if m, ok := cat.Resolve("llama3.1"); !ok || !m.PinnedTo(c.Neurons[0].Name) {
		t.Errorf("llama3.1 = %+v, %v: want it pinned on %s", m, ok, c.Neurons[0].Name)
	}
	if !c.Entitlements.RequireAuth || len(c.Entitlements.Keys) != 2 {
		t.Errorf("entitlements = %+v", c.Entitlements)
	}
	if _, err := entitlements.NewLocal(c.Entitlements); err != nil {
		t.Errorf("NewLocal: %v", err)
	}
}

func TestParseConfigDefaults(t *testing.T) {
	t.Parallel()
	c, err := cortex.ParseConfig([]byte("[[neurons]]\nname = \"n\"\nendpoint = \"http://n:1\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Gateway.Listen != cortex.DefaultListen || c.Gateway.MetricsListen != cortex.DefaultMetricsListen ||
		c.Gateway.StreamIdleTimeout.Std() != cortex.DefaultStreamIdleTimeout || c.Gateway.MaxBodyBytes != cortex.DefaultMaxBodyBytes ||
		c.Gateway.BodyReadTimeout.Std() != cortex.DefaultBodyReadTimeout ||
		c.Gateway.LoadTimeout.Std() != cortex.DefaultLoadTimeout || c.Gateway.PollInterval.Std() != route.DefaultPollInterval ||
		c.Gateway.FailureThreshold != route.DefaultFailureThreshold || c.ModelsConfig != "" {
		t.Errorf("defaults: %+v", c)
	}
	if len(c.GatewayOptions()) == 0 {
		t.Error("no gateway options")
	}
}

func TestParseConfigErrors(t *testing.T) {
	t.Parallel()
	const neuronOK = "[[neurons]]\nname = \"n1\"\nendpoint = \"http://n1:1\"\n"
	tests := []struct {
		name string
		in   string
		want []cortex.ConfigError // File, Line, Entry; Msg checked by substring
		msg  []string
	}{
		{
			name: "unknown key",
			in:   "[gateway]\nlisten = \"x:1\"\nlisten_addr = \"y\"\n" + neuronOK,
			want: []cortex.ConfigError{{Line: 3}},
			msg:  []string{`unknown key "gateway.listen_addr"`},
		},
		{
			name: "prefix affinity too deep",
			in:   neuronOK + "[routing]\nprefix_affinity = true\naffinity_depth = 17\n",
			want: []cortex.ConfigError{{Line: 4, Entry: "routing"}},
			msg:  []string{"depth 17 is not in [1, 16]"},
		},
		{
			name: "affinity knobs without affinity",
			in:   neuronOK + "[routing]\naffinity_bound = 2.0\n",
			want: []cortex.ConfigError{{Line: 4, Entry: "routing"}},
			msg:  []string{"need prefix_affinity = true"},
		},
		{
			name: "scaling target not positive",
			in:   neuronOK + "[scaling]\ntarget_work = -1\nwindow = \"1s\"\n",
			want: []cortex.ConfigError{{Line: 4, Entry: "scaling"}},
			msg:  []string{"target work -1 is not positive"},
		},
		{
			name: "scaling window negative",
			in:   neuronOK + "[scaling]\ntarget_work = 2\nwindow = \"-1s\"\n",
			want: []cortex.ConfigError{{Line: 6}},
			msg:  []string{"window", "negative"},
		},
		{
			name: "scaling duration without a unit",
			in:   neuronOK + "[scaling]\ncooldown = 30\n",
			want: []cortex.ConfigError{{Line: 5}},
			msg:  []string{"cooldown"},
		},
		{
			name: "wrong type",
			in:   neuronOK + "\n[gateway]\nmax_body_bytes = \"lots\"\n",
			want: []cortex.ConfigError{{Line: 6}},
			msg:  []string{"max_body_bytes"},
		},
		{
			name: "bad duration",
			in:   neuronOK + "[gateway]\nload_timeout = \"soon\"\n",
			want: []cortex.ConfigError{{Line: 5}},
			msg:  []string{"load_timeout"},
		},
		{
			name: "negative body read timeout",
			in:   neuronOK + "[gateway]\nbody_read_timeout = \"-1s\"\n",
			want: []cortex.ConfigError{{Line: 5}},
			msg:  []string{"body_read_timeout: negative duration"},
		},
		{
			name: "no neurons",
			in:   "[gateway]\n",
			want: []cortex.ConfigError{{}},
			msg:  []string{"at least one neuron"},
		},
		{
			name: "invalid neurons",
			in:   neuronOK + "\n[[neurons]]\nname = \"n2\"\nendpoint = \"ftp://n2\"\n\n[[neurons]]\nname = \"n1\"\nendpoint = \"http://n1:2\"\n",
			want: []cortex.ConfigError{{Line: 5, Entry: "neurons[1] (n2)"}, {Line: 9, Entry: "neurons[2] (n1)"}},
			msg:  []string{"scheme", `duplicate name "n1" (also neurons[0])`},
		},
		{
			name: "same listen addresses",
			in:   "[gateway]\nlisten = \"a:1\"\nmetrics_listen = \"a:1\"\n" + neuronOK,
			want: []cortex.ConfigError{{Line: 1, Entry: "gateway"}},
			msg:  []string{"same address"},
		},
		{
			name: "bad key",
			in:   neuronOK + "[entitlements]\nrequire_auth = true\n[[entitlements.keys]]\naccount_id = \"a\"\n",
			want: []cortex.ConfigError{{Line: 6, Entry: "entitlements.keys[0] (account a)"}},
			msg:  []string{"neither key nor key_sha256"},
		},
		{
			name: "bad model pattern",
			in:   neuronOK + "[entitlements]\n[[entitlements.keys]]\nkey = \"sk-a\"\naccount_id = \"a\"\n\n[[entitlements.keys]]\nkey = \"sk-b\"\naccount_id = \"b\"\nmodels = [\"llama-[78]b\"]\n",
			want: []cortex.ConfigError{{Line: 9, Entry: "entitlements.keys[1] (account b)"}},
			msg:  []string{`models[0] "llama-[78]b": '[', ']' and '\' are not supported`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := cortex.ParseConfig([]byte(tt.in))
			if err == nil {
				t.Fatal("ParseConfig succeeded")
			}
			var got []cortex.ConfigError
			var msgs []string
			for _, e := range unjoin(err) {
				var ce *cortex.ConfigError
				if !errors.As(e, &ce) {
					t.Fatalf("%v is not a *ConfigError", e)
				}
				got = append(got, cortex.ConfigError{Line: ce.Line, Entry: ce.Entry})
				msgs = append(msgs, ce.Msg)
			}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("errors (-got +want):\n%s\n(%v)", diff, err)
			}
			for i, m := range tt.msg {
				if i < len(msgs) && !strings.Contains(msgs[i], m) {
					t.Errorf("error %d: %q does not say %q", i, msgs[i], m)
				}
			}
		})
	}
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func TestLoadConfigNamesTheFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "cortex.toml")
	if err := os.WriteFile(path, []byte("bogus = 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := cortex.LoadConfig(path)
	if err == nil || !strings.HasPrefix(err.Error(), path+":1: ") {
		t.Errorf("LoadConfig error %v, want it to start with %s:1:", err, path)
	}
	if _, err := cortex.LoadConfig(filepath.Join(t.TempDir(), "missing.toml")); err == nil {
		t.Error("LoadConfig of a missing file succeeded")
	}
}

func TestParseConfigStrictCaps(t *testing.T) {
	t.Parallel()
	c, err := cortex.ParseConfig([]byte("[[neurons]]\nname = \"n\"\nendpoint = \"http://n:1\"\n[entitlements]\nstrict_caps = true\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Entitlements.StrictCaps {
		t.Error("strict_caps = true was not read")
	}
}

// TestParseConfigBareDuration checks that a duration written as a bare
// number, which go-toml would read as nanoseconds, is refused with its
// key, its line and the string to write instead.
func TestParseConfigBareDuration(t *testing.T) {
	t.Parallel()
	const neuronOK = "[[neurons]]\nname = \"n1\"\nendpoint = \"http://n1:1\"\n"
	tests := []struct {
		name string
		in   string
		want string
	}{
		{name: "poll_interval", in: neuronOK + "[gateway]\npoll_interval = 2\n", want: `cortex.toml:5: gateway.poll_interval: 2 has no unit: write a string such as "2s"`},
		{name: "stream_idle_timeout", in: "[gateway]\nstream_idle_timeout = 300\n" + neuronOK, want: `cortex.toml:2: gateway.stream_idle_timeout: 300 has no unit: write a string such as "300s"`},
		{name: "outlier", in: neuronOK + "[outlier_detection]\nbase_ejection_time = 10\n", want: `cortex.toml:5: outlier_detection.base_ejection_time: 10 has no unit: write a string such as "10s"`},
		{name: "lease_ttl", in: neuronOK + "[entitlements.redis]\nurl = \"redis://r:6379\"\nlease_ttl = 60\n", want: `cortex.toml:6: entitlements.redis.lease_ttl: 60 has no unit: write a string such as "60s"`},
		{name: "sync_interval", in: neuronOK + "[entitlements.local]\npath = \"l\"\nsync_interval = 0.5\n", want: `cortex.toml:6: entitlements.local.sync_interval: 0.5 has no unit: write a string such as "0.5s"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := cortex.ParseConfig([]byte(tt.in))
			if err == nil || err.Error() != tt.want {
				t.Errorf("ParseConfig error = %v, want %s", err, tt.want)
			}
			if _, ok := errors.AsType[*cortex.ConfigError](err); !ok {
				t.Errorf("%v is not a *ConfigError", err)
			}
		})
	}
}

// TestUnknownKeyWording checks that every configuration file reports an
// unknown key in the same words, with its line.
func TestUnknownKeyWording(t *testing.T) {
	t.Parallel()
	const want = `1: unknown key "bogus"`
	parse := map[string]func([]byte) error{
		"cortex.toml": func(b []byte) error { _, err := cortex.ParseConfig(b); return err },
		"neuron.toml": func(b []byte) error { _, err := neuron.ParseConfig(b); return err },
		"entitlements": func(b []byte) error {
			_, err := entitlements.ParseConfig(b)
			return err
		},
		"models.toml": func(b []byte) error { _, err := catalogue.Parse(b); return err },
	}
	for name, f := range parse {
		err := f([]byte("bogus = 1\n"))
		if err == nil || !strings.HasSuffix(strings.SplitN(err.Error(), "\n", 2)[0], want) {
			t.Errorf("%s: error = %v, want its first line to end with %s", name, err, want)
		}
	}
}
