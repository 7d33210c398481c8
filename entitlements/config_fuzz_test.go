package entitlements_test

import (
	"errors"
	"testing"

	"github.com/helexa-ai/helexa-go/entitlements"
)

// FuzzParseConfig checks that ParseConfig never panics, that its errors are
// *ConfigError values, and that a configuration it accepts builds a Local
// provider whose keys all resolve: what parses, runs.
func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{
		"require_auth = true\n[[keys]]\nkey = \"sk-a\"\naccount_id = \"a\"\nhard_cap = 100\n",
		"[[keys]]\nkey = \"sk-a\"\naccount_id = \"a\"\nkey_id = \"k1\"\nhard_cap = 5\nwindow = { kind = \"rolling\", seconds = 60 }\nmax_in_flight = 2\nrpm = 3\nclamp_max_tokens = true\n" +
			"[[keys]]\nkey_sha256 = \"5b3bfae87dd2f9132d456ff081ac4531c0c84dfe0b03b35d5f45ce2d3d3ac764\"\naccount_id = \"a\"\nkey_id = \"k2\"\nhard_cap = 5\nwindow = { kind = \"rolling\", seconds = 60 }\n",
		"[[keys]]\nkey = \"sk-u\"\naccount_id = \"u\"\nunit = \"usd\"\nhard_cap_usd = 25.5\n",
		"[[keys]]\nkey = \"x\"\nkey_sha256 = \"00\"\naccount_id = \"\"\nunit = \"eur\"\nhard_cap = -1\nwindow = { kind = \"rolling\", seconds = 0 }\n",
		"[[keys]]\nkey = \"x\"\naccount_id = \"a\"\n[[keys]]\nkey = \"x\"\naccount_id = \"b\"\n",
		"[[keys]]\nkey = \"x\"\naccount_id = \"a\"\nhard_cap = 1\n[[keys]]\nkey = \"y\"\naccount_id = \"a\"\nhard_cap = 2\n",
		"[[keys]]\nkey = \"x\"\naccount_id = \"a\"\nunit = \"usd\"\nhard_cap_usd = 1e300\n",
		"[redis]\nurl = \"redis://h:1\"\nlease_ttl = \"1m\"\n", "keys = 1\n", "[[keys]\n", "",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := entitlements.ParseConfig(data)
		if err != nil {
			for _, e := range splitJoined(err) {
				if _, ok := errors.AsType[*entitlements.ConfigError](e); !ok {
					t.Fatalf("ParseConfig error %T (%v) is not a *ConfigError", e, e)
				}
			}
			return
		}
		keys, err := c.APIKeys()
		if err != nil {
			t.Fatalf("ParseConfig accepted a config whose APIKeys fail: %v", err)
		}
		l, err := entitlements.NewLocal(c)
		if err != nil {
			t.Fatalf("ParseConfig accepted a config that NewLocal refuses: %v", err)
		}
		for i, kc := range c.Keys {
			if kc.Key == "" {
				continue // only the digest is known
			}
			p, err := l.Resolve(t.Context(), kc.Key)
			if err != nil {
				t.Fatalf("keys[%d] does not resolve: %v", i, err)
			}
			if p != keys[i].Principal {
				t.Fatalf("keys[%d] resolves to %+v, want %+v", i, p, keys[i].Principal)
			}
		}
	})
}

// splitJoined returns the errors joined in err, or err alone.
func splitJoined(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
