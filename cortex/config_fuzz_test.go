package cortex_test

import (
	"errors"
	"testing"

	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/entitlements"
)

// FuzzParseConfig checks that ParseConfig never panics, that every error
// it returns is made of *ConfigError values, and that a configuration it
// accepts builds a Gateway and its entitlements provider: what parses, runs.
func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{
		"[[neurons]]\nname = \"a\"\nendpoint = \"http://127.0.0.1:1\"\n",
		"models_config = \"m.toml\"\n[gateway]\nlisten = \"0.0.0.0:1\"\nmetrics_listen = \"0.0.0.0:2\"\nstream_idle_timeout = \"1s\"\n" +
			"max_body_bytes = 10\nload_timeout = \"1m\"\npoll_interval = \"100ms\"\nfailure_threshold = 2\n" +
			"[[neurons]]\nname = \"a\"\nendpoint = \"https://gpu:1/x\"\ntoken = \"t\"\n" +
			"[entitlements]\nrequire_auth = true\n[[entitlements.keys]]\nkey = \"k\"\naccount_id = \"a\"\nhard_cap = 5\nwindow = { kind = \"rolling\", seconds = 60 }\n",
		"[[neurons]]\nname = \"a\"\nendpoint = \"http://h\"\n[[neurons]]\nname = \"a\"\nendpoint = \"http://h\"\n",
		"[gateway]\nlisten = \"x\"\nmetrics_listen = \"x\"\nfailure_threshold = -1\nmax_body_bytes = -5\n",
		"[[neurons]]\nname = \"a b\"\nendpoint = \"ftp://h\"\n[entitlements]\nrequire_auth = true\n",
		"[[neurons]]\nname = \"a\"\nendpoint = \"http://h\"\n[[entitlements.keys]]\nkey_sha256 = \"zz\"\naccount_id = \"\"\nunit = \"usd\"\nhard_cap_usd = -1.0\n",
		"[gateway]\nstream_idle_timeout = \"-1s\"\nunknown = 1\n",
		"[[neurons]]\nname = \"a\"\nendpoint = \"http://h\"\n[entitlements.redis]\nurl = \"redis://127.0.0.1:1\"\n",
		"[gateway]\nsettle_outbox = \"s.jsonl\"\nsettle_retry_window = \"1h\"\n[[neurons]]\nname = \"a\"\nendpoint = \"http://h\"\n",
		"neurons = 5\n", "[gateway\n", "",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := cortex.ParseConfig(data)
		if err != nil {
			for _, e := range unjoin(err) {
				if _, ok := errors.AsType[*cortex.ConfigError](e); !ok {
					t.Fatalf("ParseConfig error %T (%v) is not a *ConfigError", e, e)
				}
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("ParseConfig accepted a config that Validate refuses: %v", err)
		}
		if c.Gateway.Listen == "" || c.Gateway.MetricsListen == "" || c.Gateway.MaxBodyBytes <= 0 ||
			c.Gateway.StreamIdleTimeout <= 0 || c.Gateway.PollInterval <= 0 || c.Gateway.FailureThreshold <= 0 {
			t.Fatalf("defaults not applied: %+v", c.Gateway)
		}
		// The settle outbox is a file NewGateway creates: not here.
		c.Gateway.SettleOutbox = ""
		opts := c.GatewayOptions()
		if c.Entitlements.Redis == nil {
			p, err := entitlements.NewLocal(c.Entitlements)
			if err != nil {
				t.Fatalf("ParseConfig accepted [entitlements] that NewLocal refuses: %v", err)
			}
			opts = append(opts, cortex.WithProvider(p))
		} else if c.Entitlements.RequireAuth {
			return // the provider would be Redis: not built here
		}
		gw, err := cortex.NewGateway(c.Neurons, nil, opts...)
		if err != nil {
			t.Fatalf("ParseConfig accepted a config that NewGateway refuses: %v", err)
		}
		if err := gw.Shutdown(t.Context()); err != nil {
			t.Fatal(err)
		}
	})
}
