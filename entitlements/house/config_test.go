package house_test

import (
	"strings"
	"testing"

	"github.com/helexa-ai/helexa-go/entitlements/house"
)

// TestConfigExample: the example configuration parses and builds a
// Handler.
func TestConfigExample(t *testing.T) {
	t.Parallel()
	c, err := house.LoadConfig("testdata/house.toml")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Gateways) != 2 || c.Listen != "127.0.0.1:7400" || len(c.Entitlements.Keys) != 1 {
		t.Errorf("parsed %+v", c)
	}
}

// TestConfigErrors: what a house cannot run with is refused.
func TestConfigErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ name, doc, want string }{
		{"no gateways", `listen = ":1"`, "no [[gateways]]"},
		{"bad digest", "[[gateways]]\nname = \"a\"\ntoken_sha256 = \"xyz\"", "token_sha256"},
		{"unknown key", "lissen = \":1\"", "unknown"},
		{"half tls", "tls_cert = \"a\"\n[[gateways]]\nname = \"a\"\ntoken_sha256 = \"" + strings.Repeat("0", 64) + "\"", "tls_key"},
	} {
		if _, err := house.ParseConfig([]byte(tt.doc)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want an error naming %q", tt.name, err, tt.want)
		}
	}
}
