package cortex_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/helexa-ai/helexa-go/cortex"
)

// FuzzRewriteEndpoint checks the rule that keeps a neuron from sending the
// gateway elsewhere: whatever a neuron reports, a URL that is accepted
// points at the neuron's configured host, over http or https, with no user
// info, query or fragment, and a path without a trailing slash.
func FuzzRewriteEndpoint(f *testing.F) {
	for _, s := range [][2]string{
		{"http://10.0.0.5:31400", "http://127.0.0.1:31400"},
		{"http://10.0.0.5:31400", "http://0.0.0.0:40000/v1/"},
		{"http://gpu-01.lan:31400", "http://localhost:31400"},
		{"http://gpu-01.lan:31400", "https://GPU-01.lan/base"},
		{"http://[fd00::5]:31400", "http://[::1]:31400"},
		{"http://[fd00::5]:31400", "http://[::]:8080"},
		{"http://10.0.0.5:31400", "http://203.0.113.9:31400"},
		{"http://10.0.0.5:31400", "http://user:pw@127.0.0.1:1"},
		{"http://10.0.0.5:31400", "http://127.0.0.1:1/?q=1#f"},
		{"http://10.0.0.5:31400", "ftp://127.0.0.1:1"},
		{"http://10.0.0.5:31400", "http://127.0.0.1:1/%2F%2e%2e/"},
		{"http://10.0.0.5", "http://127.1:80"},
		{"http://10.0.0.5:31400", "//127.0.0.1:1"},
		{"http://10.0.0.5:31400", "http://127.0.0.1:99999999"},
		{"http://10.0.0.5:31400", "http://10.0.0.5.evil.example:1"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, configured, reported string) {
		// Only endpoints that NeuronConfig.Validate accepts reach the
		// rewrite.
		if (cortex.NeuronConfig{Name: "n", Endpoint: configured}).Validate() != nil {
			return
		}
		base, err := url.Parse(configured)
		if err != nil {
			t.Fatalf("Validate accepted %q, which url.Parse refuses: %v", configured, err)
		}
		got, err := cortex.RewriteEndpoint(base, reported)
		if err != nil {
			return
		}
		if !strings.EqualFold(got.Hostname(), base.Hostname()) {
			t.Fatalf("RewriteEndpoint(%q, %q) = %q: host %q is not the configured %q",
				configured, reported, got, got.Hostname(), base.Hostname())
		}
		if got.Scheme != "http" && got.Scheme != "https" {
			t.Fatalf("RewriteEndpoint(%q, %q) = %q: scheme %q", configured, reported, got, got.Scheme)
		}
		if got.User != nil || got.RawQuery != "" || got.Fragment != "" || got.Opaque != "" {
			t.Fatalf("RewriteEndpoint(%q, %q) = %q: user info, query, fragment or opaque part kept", configured, reported, got)
		}
		if strings.HasSuffix(got.Path, "/") {
			t.Fatalf("RewriteEndpoint(%q, %q) = %q: trailing slash kept", configured, reported, got)
		}
		// What the gateway sends to must parse back to the same host: a
		// host that changes on the way through String is a way out.
		again, err := url.Parse(got.String())
		if err != nil {
			t.Fatalf("RewriteEndpoint(%q, %q) = %q, which does not parse again: %v", configured, reported, got, err)
		}
		if !strings.EqualFold(again.Hostname(), base.Hostname()) {
			t.Fatalf("RewriteEndpoint(%q, %q) = %q parses back to host %q", configured, reported, got, again.Hostname())
		}
	})
}
