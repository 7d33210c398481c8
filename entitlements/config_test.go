package entitlements_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/pelletier/go-toml/v2"
)

func hexDigest(secret string) string {
	d := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(d[:])
}

func ptr[T any](v T) *T { return &v }

func TestParseConfig(t *testing.T) {
	t.Parallel()
	doc := `
require_auth = true

[[keys]]
key = "sk-alice"
account_id = "acme"
key_id = "alice"
hard_cap = 1_000_000
window = { kind = "rolling", seconds = 86400 }
clamp_max_tokens = true
max_in_flight = 8
rpm = 600
models = ["llama-*", "org/*", "llama-*"]

[[keys]]
key_sha256 = "` + hexDigest("sk-bob") + `"
account_id = "globex"
unit = "usd"
hard_cap_usd = 12.5

[[keys]]
key = "sk-free"
account_id = "initech"
window = { kind = "balance" }

[redis]
url = "redis://127.0.0.1:6379/0"
key_prefix = "helexa:"
lease_ttl = "5m"
fail_open = true
`
	got, err := entitlements.ParseConfig([]byte(doc))
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	want := entitlements.Config{
		RequireAuth: true,
		Keys: []entitlements.KeyConfig{
			{
				Key: "sk-alice", AccountID: "acme", KeyID: "alice", HardCap: ptr[int64](1_000_000),
				Window:         entitlements.WindowConfig{Kind: "rolling", Seconds: 86400},
				ClampMaxTokens: true, MaxInFlight: 8, RPM: 600, Models: &[]string{"llama-*", "org/*", "llama-*"},
			},
			{KeySHA256: hexDigest("sk-bob"), AccountID: "globex", Unit: "usd", HardCapUSD: ptr(12.5)},
			{Key: "sk-free", AccountID: "initech", Window: entitlements.WindowConfig{Kind: "balance"}},
		},
		Redis: &entitlements.RedisConfig{
			URL: "redis://127.0.0.1:6379/0", KeyPrefix: "helexa:",
			LeaseTTL: entitlements.Duration(5 * time.Minute), FailOpen: true,
		},
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("ParseConfig mismatch (-got +want):\n%s", diff)
	}

	keys, err := got.APIKeys()
	if err != nil {
		t.Fatalf("APIKeys: %v", err)
	}
	wantKeys := []entitlements.Key{
		{
			Digest: entitlements.KeyDigest("sk-alice"),
			Principal: entitlements.Principal{
				AccountID: "acme", KeyID: "alice",
				Limits: entitlements.Limits{ClampMaxTokens: true, MaxInFlight: 8, RPM: 600, Models: allowList(t, "org/*", "llama-*")},
			},
			Budget: entitlements.Budget{HardCap: entitlements.Cap(1_000_000), Window: entitlements.Rolling(86400)},
		},
		{
			Digest:    entitlements.KeyDigest("sk-bob"),
			Principal: entitlements.Principal{AccountID: "globex", KeyID: "globex", Unit: entitlements.UnitMicroUSD},
			Budget:    entitlements.Budget{HardCap: entitlements.Cap(12_500_000)},
		},
		{
			Digest:    entitlements.KeyDigest("sk-free"),
			Principal: entitlements.Principal{AccountID: "initech", KeyID: "initech"},
		},
	}
	if diff := cmp.Diff(keys, wantKeys); diff != "" {
		t.Errorf("APIKeys mismatch (-got +want):\n%s", diff)
	}
}

func TestParseConfigEmpty(t *testing.T) {
	t.Parallel()
	got, err := entitlements.ParseConfig(nil)
	if err != nil {
		t.Fatalf("ParseConfig(empty): %v", err)
	}
	if diff := cmp.Diff(got, entitlements.Config{}); diff != "" {
		t.Errorf("ParseConfig(empty) mismatch (-got +want):\n%s", diff)
	}
}

// TestParseConfigDecodeErrors checks that decode problems carry the line
// they are on.
func TestParseConfigDecodeErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		wantErr []string // one ConfigError string per problem
	}{
		{
			name: "typo in a key entry",
			in: `require_auth = true

[[keys]]
key = "sk-a"
account_id = "a"
hard_capp = 100
`,
			wantErr: []string{`line 6: unknown key "keys.hard_capp"`},
		},
		{
			name:    "typo at the top level",
			in:      "require_auht = true\n",
			wantErr: []string{`line 1: unknown key "require_auht"`},
		},
		{
			name: "typo inside the window table",
			in: `[[keys]]
key = "sk-a"
account_id = "a"
window = { kind = "rolling", secs = 60 }
`,
			wantErr: []string{`line 4: unknown key "keys.window.secs"`},
		},
		{
			name: "two typos",
			in: `[[keys]]
key = "sk-a"
acount_id = "a"

[redis]
uri = "redis://x"
`,
			wantErr: []string{
				`line 3: unknown key "keys.acount_id"`,
				`line 6: unknown key "redis.uri"`,
			},
		},
		{
			name: "wrong type",
			in: `[[keys]]
key = "sk-a"
account_id = "a"
hard_cap = "lots"
`,
			wantErr: []string{"line 4: keys.hard_cap: want an integer, got string"},
		},
		{
			name:    "syntax error",
			in:      "[[keys]\nkey = 1\n",
			wantErr: []string{"line 1: expected ']]' to close array table name"},
		},
		{
			name: "bad duration",
			in: `[redis]
url = "redis://x"
lease_ttl = "five minutes"
`,
			wantErr: []string{`line 3: redis.lease_ttl: time: invalid duration "five minutes"`},
		},
		{
			name: "bare number duration",
			in: `[redis]
url = "redis://x"
lease_ttl = 300
`,
			wantErr: []string{`line 3: redis.lease_ttl: 300 has no unit: write a string such as "300s"`},
		},
		{
			name: "bare number sync interval",
			in: `[local]
path = "ledger"

sync_interval = 10
`,
			wantErr: []string{`line 4: local.sync_interval: 10 has no unit: write a string such as "10s"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := entitlements.ParseConfig([]byte(tt.in))
			if err == nil {
				t.Fatal("ParseConfig = nil error, want an error")
			}
			var ce *entitlements.ConfigError
			if !errors.As(err, &ce) || ce.Line == 0 {
				t.Errorf("err = %v, want a *ConfigError with a line", err)
			}
			if diff := cmp.Diff(strings.Split(err.Error(), "\n"), tt.wantErr); diff != "" {
				t.Errorf("error mismatch (-got +want):\n%s", diff)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	ok := func(id string) entitlements.KeyConfig {
		return entitlements.KeyConfig{Key: "sk-" + id, AccountID: id}
	}
	with := func(k entitlements.KeyConfig, f func(*entitlements.KeyConfig)) entitlements.KeyConfig {
		f(&k)
		return k
	}
	tests := []struct {
		name    string
		in      entitlements.Config
		wantErr []string // one line per problem; nil when valid
	}{
		{name: "empty", in: entitlements.Config{}},
		{
			name: "valid mix",
			in: entitlements.Config{Keys: []entitlements.KeyConfig{
				ok("a"),
				with(ok("b"), func(k *entitlements.KeyConfig) {
					k.Unit, k.HardCapUSD = "usd", ptr(0.5)
					k.Window = entitlements.WindowConfig{Kind: "rolling", Seconds: 60}
				}),
				with(ok("c"), func(k *entitlements.KeyConfig) { k.HardCap = ptr[int64](0) }), // disabled key
				with(ok("a"), func(k *entitlements.KeyConfig) { k.Key, k.KeyID = "sk-a2", "second" }),
				with(ok("a"), func(k *entitlements.KeyConfig) { k.Key = "sk-a3" }), // rotation of key id "a"
			}},
		},
		{
			name:    "both key and digest",
			in:      entitlements.Config{Keys: []entitlements.KeyConfig{ok("x"), with(ok("acme"), func(k *entitlements.KeyConfig) { k.KeySHA256 = hexDigest("y") })}},
			wantErr: []string{"entitlements config: keys[1] (account acme): both key and key_sha256 set"},
		},
		{
			name:    "neither key nor digest",
			in:      entitlements.Config{Keys: []entitlements.KeyConfig{{AccountID: "acme"}}},
			wantErr: []string{"entitlements config: keys[0] (account acme): neither key nor key_sha256 set"},
		},
		{
			name: "bad digest",
			in: entitlements.Config{Keys: []entitlements.KeyConfig{
				{KeySHA256: "zz", AccountID: "a"},
				{KeySHA256: hexDigest("x")[:62], AccountID: "b"},
			}},
			wantErr: []string{
				"entitlements config: keys[0] (account a): key_sha256 is not a hex SHA-256 digest (64 hex digits)",
				"entitlements config: keys[1] (account b): key_sha256 is not a hex SHA-256 digest (64 hex digits)",
			},
		},
		{
			name: "duplicate key, plaintext and digest",
			in: entitlements.Config{Keys: []entitlements.KeyConfig{
				ok("a"),
				{KeySHA256: strings.ToUpper(hexDigest("sk-a")), AccountID: "b"},
				{Key: "sk-a", AccountID: "c"},
			}},
			wantErr: []string{
				"entitlements config: keys[1] (account b): same key as keys[0]",
				"entitlements config: keys[2] (account c): same key as keys[0]",
			},
		},
		{
			name: "model patterns",
			in: entitlements.Config{Keys: []entitlements.KeyConfig{
				with(ok("a"), func(k *entitlements.KeyConfig) { k.Models = &[]string{} }),
				with(ok("b"), func(k *entitlements.KeyConfig) { k.Models = &[]string{"ok-*", "llama-[78]b"} }),
				with(ok("c"), func(k *entitlements.KeyConfig) { k.Models = &[]string{"a b"} }),
			}},
			wantErr: []string{
				"entitlements config: keys[0] (account a): the list is empty: it would allow no model (leave it out to allow every model)",
				`entitlements config: keys[1] (account b): models[1] "llama-[78]b": '[', ']' and '\' are not supported: use '*' (any run of characters) and '?' (one character)`,
				`entitlements config: keys[2] (account c): models[0] "a b": has white space or control characters`,
			},
		},
		{
			name: "key id with other models",
			in: entitlements.Config{Keys: []entitlements.KeyConfig{
				with(ok("a"), func(k *entitlements.KeyConfig) { k.Models = &[]string{"x"} }),
				with(ok("a"), func(k *entitlements.KeyConfig) { k.Key, k.Models = "sk-a2", &[]string{"y"} }),
			}},
			wantErr: []string{`entitlements config: keys[1] (account a): limits differ from keys[0], which has the same key_id "a"`},
		},
		{
			name:    "missing account",
			in:      entitlements.Config{Keys: []entitlements.KeyConfig{{Key: "sk"}}},
			wantErr: []string{"entitlements config: keys[0]: account_id is required"},
		},
		{
			name: "windows",
			in: entitlements.Config{Keys: []entitlements.KeyConfig{
				with(ok("a"), func(k *entitlements.KeyConfig) { k.Window.Kind = "rolling" }),
				with(ok("b"), func(k *entitlements.KeyConfig) { k.Window = entitlements.WindowConfig{Kind: "rolling", Seconds: -5} }),
				with(ok("c"), func(k *entitlements.KeyConfig) { k.Window.Kind = "monthly" }),
				with(ok("d"), func(k *entitlements.KeyConfig) { k.Window = entitlements.WindowConfig{Kind: "balance", Seconds: 5} }),
				with(ok("e"), func(k *entitlements.KeyConfig) { k.Window.Seconds = 60 }),
			}},
			wantErr: []string{
				"entitlements config: keys[0] (account a): a rolling window needs seconds > 0",
				"entitlements config: keys[1] (account b): a rolling window needs seconds > 0",
				`entitlements config: keys[2] (account c): unknown window kind "monthly" (want "balance" or "rolling")`,
				"entitlements config: keys[3] (account d): window seconds set on a balance window",
				`entitlements config: keys[4] (account e): window has seconds but no kind (want kind = "rolling")`,
			},
		},
		{
			name: "caps",
			in: entitlements.Config{Keys: []entitlements.KeyConfig{
				with(ok("a"), func(k *entitlements.KeyConfig) { k.HardCap = ptr[int64](-1) }),
				with(ok("b"), func(k *entitlements.KeyConfig) {
					k.HardCap = ptr[int64](0)
					k.Window = entitlements.WindowConfig{Kind: "rolling", Seconds: 60}
				}),
				with(ok("c"), func(k *entitlements.KeyConfig) { k.Unit, k.HardCapUSD = "usd", ptr(-0.01) }),
				with(ok("d"), func(k *entitlements.KeyConfig) { k.Unit, k.HardCapUSD = "usd", ptr(1e300) }),
			}},
			wantErr: []string{
				"entitlements config: keys[0] (account a): hard cap must not be negative",
				"entitlements config: keys[1] (account b): hard cap 0 with a rolling window can never be spent (use a balance of 0 to disable a key)",
				"entitlements config: keys[2] (account c): hard cap must not be negative",
				"entitlements config: keys[3] (account d): hard_cap_usd is out of range",
			},
		},
		{
			name: "units",
			in: entitlements.Config{Keys: []entitlements.KeyConfig{
				with(ok("a"), func(k *entitlements.KeyConfig) { k.Unit = "eur" }),
				with(ok("b"), func(k *entitlements.KeyConfig) { k.HardCapUSD = ptr(1.0) }),
				with(ok("c"), func(k *entitlements.KeyConfig) { k.Unit, k.HardCap = "usd", ptr[int64](5) }),
			}},
			wantErr: []string{
				`entitlements config: keys[0] (account a): unknown unit "eur" (want "tokens" or "usd")`,
				`entitlements config: keys[1] (account b): hard_cap_usd needs unit = "usd" (use hard_cap for tokens)`,
				`entitlements config: keys[2] (account c): hard_cap is in tokens; use hard_cap_usd with unit = "usd"`,
			},
		},
		{
			name: "negative limits",
			in: entitlements.Config{Keys: []entitlements.KeyConfig{
				with(ok("a"), func(k *entitlements.KeyConfig) { k.MaxInFlight, k.RPM = -1, -2 }),
			}},
			wantErr: []string{
				"entitlements config: keys[0] (account a): max_in_flight must not be negative",
				"entitlements config: keys[0] (account a): rpm must not be negative",
			},
		},
		{
			name: "account budget must agree",
			in: entitlements.Config{Keys: []entitlements.KeyConfig{
				with(ok("a"), func(k *entitlements.KeyConfig) { k.HardCap = ptr[int64](100) }),
				with(ok("a"), func(k *entitlements.KeyConfig) { k.Key, k.KeyID, k.HardCap = "sk-a2", "k2", ptr[int64](200) }),
				with(ok("a"), func(k *entitlements.KeyConfig) { k.Key, k.KeyID, k.HardCap, k.Unit = "sk-a3", "k3", nil, "usd" }),
				with(ok("a"), func(k *entitlements.KeyConfig) {
					k.Key, k.KeyID, k.HardCap = "sk-a4", "k4", ptr[int64](100)
					k.Window = entitlements.WindowConfig{Kind: "rolling", Seconds: 60}
				}),
			}},
			wantErr: []string{
				"entitlements config: keys[1] (account a): hard cap or window differs from keys[0] of the same account (a budget belongs to the account)",
				`entitlements config: keys[2] (account a): unit "usd" differs from keys[0] of the same account (a budget belongs to the account)`,
				"entitlements config: keys[3] (account a): hard cap or window differs from keys[0] of the same account (a budget belongs to the account)",
			},
		},
		{
			name: "shared key id must agree on limits",
			in: entitlements.Config{Keys: []entitlements.KeyConfig{
				ok("a"),
				with(ok("a"), func(k *entitlements.KeyConfig) { k.Key, k.RPM = "sk-a2", 10 }),
			}},
			wantErr: []string{`entitlements config: keys[1] (account a): limits differ from keys[0], which has the same key_id "a"`},
		},
		{
			name: "redis",
			in:   entitlements.Config{Redis: &entitlements.RedisConfig{LeaseTTL: -1}},
			wantErr: []string{
				"entitlements config: redis: url is required",
				"entitlements config: redis: lease_ttl must not be negative",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.in.Validate()
			var got []string
			if err != nil {
				got = strings.Split(err.Error(), "\n")
				var ce *entitlements.ConfigError
				if !errors.As(err, &ce) {
					t.Errorf("err = %v, want *ConfigError values", err)
				}
			}
			if diff := cmp.Diff(got, tt.wantErr); diff != "" {
				t.Errorf("Validate mismatch (-got +want):\n%s", diff)
			}
		})
	}
}

// TestConfigNested decodes the section the way cortex.toml embeds it.
func TestConfigNested(t *testing.T) {
	t.Parallel()
	doc := `
[entitlements]
require_auth = true

[[entitlements.keys]]
key = "sk-a"
account_id = "a"
window = { kind = "rolling", seconds = 60 }
hard_cap = 10

[entitlements.redis]
url = "redis://127.0.0.1:6379"
lease_ttl = "30s"
`
	var got struct {
		Entitlements entitlements.Config `toml:"entitlements"`
	}
	if err := toml.NewDecoder(bytes.NewReader([]byte(doc))).DisallowUnknownFields().Decode(&got); err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if err := got.Entitlements.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	want := entitlements.Config{
		RequireAuth: true,
		Keys: []entitlements.KeyConfig{{
			Key: "sk-a", AccountID: "a", HardCap: ptr[int64](10),
			Window: entitlements.WindowConfig{Kind: "rolling", Seconds: 60},
		}},
		Redis: &entitlements.RedisConfig{URL: "redis://127.0.0.1:6379", LeaseTTL: entitlements.Duration(30 * time.Second)},
	}
	if diff := cmp.Diff(got.Entitlements, want); diff != "" {
		t.Errorf("nested decode mismatch (-got +want):\n%s", diff)
	}
}

// TestExampleConfig parses the example configuration in testdata.
func TestExampleConfig(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("testdata/entitlements.toml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := entitlements.ParseConfig(data)
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	l, err := entitlements.NewLocal(cfg)
	if err != nil {
		t.Fatalf("NewLocal: %v", err)
	}
	// The comments of the file name the secrets behind its digests.
	for _, key := range []string{"sk-acme-prod", "sk-acme-ci", "sk-globex", "sk-dev-local"} {
		if _, err := l.Resolve(t.Context(), key); err != nil {
			t.Errorf("Resolve(%s): %v", key, err)
		}
	}
	if len(cfg.Keys) < 3 || cfg.Redis == nil {
		t.Errorf("example config has %d keys and redis %v; want every feature shown", len(cfg.Keys), cfg.Redis)
	}
}

func TestDurationText(t *testing.T) {
	t.Parallel()
	d := entitlements.Duration(90 * time.Second)
	b, err := d.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	var back entitlements.Duration
	if err := back.UnmarshalText(b); err != nil {
		t.Fatal(err)
	}
	if back != d || string(b) != "1m30s" {
		t.Errorf("round trip = %q -> %v, want 1m30s -> %v", b, back, d)
	}
}

func allowList(t *testing.T, patterns ...string) entitlements.ModelAllowList {
	t.Helper()
	l, err := entitlements.NewModelAllowList(patterns...)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestHouseConfig: an [house] table selects the clearing house, and
// excludes the other ledgers and keys.
func TestHouseConfig(t *testing.T) {
	t.Parallel()
	c, err := entitlements.ParseConfig([]byte("[house]\nurl = \"https://h:7400\"\ntoken_file = \"tok\"\ngrants = true\nflush_interval = \"50ms\"\ngrant_journal = \"grants.journal\"\n"))
	if err != nil || c.House == nil || !c.House.Grants || c.House.FlushInterval.Std() != 50*time.Millisecond || c.House.GrantJournal != "grants.journal" {
		t.Fatalf("ParseConfig = %+v, %v", c.House, err)
	}
	for _, doc := range []string{
		"[house]\nurl = \"https://h\"\n",
		"[house]\nurl = \"https://h\"\ntoken_file = \"t\"\n[redis]\nurl = \"redis://x\"\n",
		"[house]\nurl = \"https://h\"\ntoken_file = \"t\"\n[[keys]]\nkey = \"k\"\naccount_id = \"a\"\n",
	} {
		if _, err := entitlements.ParseConfig([]byte(doc)); err == nil || !strings.Contains(err.Error(), "house") {
			t.Errorf("ParseConfig(%q) = %v, want an error naming house", doc, err)
		}
	}
}
