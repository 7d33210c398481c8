package neuron_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/helexa-ai/helexa-go/neuron"
)

// FuzzParseConfig checks that ParseConfig never panics, that a decoding
// problem is a *ConfigError, and that a configuration it accepts builds an
// Agent: what parses, runs.
func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{
		"[[engines]]\nname = \"sim\"\ncommand = [\"helexa-sim\", \"--port\", \"{port}\"]\n",
		"listen = \"0.0.0.0:1\"\nadvertise_url = \"http://10.0.0.5:1\"\ntoken = \"t\"\ndrain_timeout = \"1s\"\ndefault_engine = \"b\"\n" +
			"[discovery]\nkind = \"static\"\nhostname = \"h\"\n[[discovery.devices]]\nindex = 0\ntotal_mb = 10\n" +
			"[admission]\nmax_in_flight = 2\nmax_queue = -1\nmax_wait = \"1s\"\nper_principal = 1\n" +
			"[[engines]]\nname = \"a\"\ncommand = [\"x\"]\nenv = { A = \"{gpus}\" }\nready_path = \"/r\"\nstart_timeout = \"1s\"\nstop_timeout = \"1s\"\n" +
			"[[engines]]\nname = \"b\"\ncommand = [\"y\", \"{model}\"]\n" +
			"[[default_models]]\nmodel_id = \"m\"\nengine = \"a\"\ndevices = [0]\nvram_mb = 5\ncontext = 10\nlimit = { context = 10 }\n",
		"[discovery]\nkind = \"static\"\n[[discovery.devices]]\nindex = -1\n[[discovery.devices]]\nindex = -1\n",
		"advertise_url = \"ftp://x\"\n[[engines]]\nname = \"\"\ncommand = []\nready_path = \"r\"\n",
		"[admission]\nmax_in_flight = -3\n[[engines]]\nname = \"a\"\ncommand = [\"a\"]\n[[default_models]]\nmodel_id = \"m\"\nengine = \"z\"\ncontext = -1\n",
		"drain_timeout = \"-1s\"\n", "drain_timeout = 5\n", "nope = 1\n", "[[engines]\n", "",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := neuron.ParseConfig(data)
		if err != nil {
			// A decoding problem is a *ConfigError with its position; a
			// validation problem names its entry after this prefix.
			var ce *neuron.ConfigError
			if !errors.As(err, &ce) && !strings.HasPrefix(err.Error(), "neuron: invalid config: ") {
				t.Fatalf("ParseConfig error %q is neither a *ConfigError nor a validation error", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("ParseConfig accepted a config that Validate refuses: %v", err)
		}
		if c.Listen == "" || c.DefaultEngine == "" {
			t.Fatalf("defaults not applied: listen %q, default engine %q", c.Listen, c.DefaultEngine)
		}
		for i, e := range c.Engines {
			if e.ReadyPath == "" || e.StartTimeout <= 0 || e.StopTimeout <= 0 {
				t.Fatalf("engines[%d]: defaults not applied: %+v", i, e)
			}
		}
		_, h := newModelTable(t, "")
		a, err := neuron.NewAgent(h, neuron.NewStaticDiscoverer(c.StaticDiscovery()), c.AgentOptions()...)
		if err != nil {
			t.Fatalf("ParseConfig accepted a config that NewAgent refuses: %v", err)
		}
		if err := a.Shutdown(t.Context()); err != nil {
			t.Fatal(err)
		}
	})
}
