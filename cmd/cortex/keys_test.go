package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/entitlements/redisledger"
	"github.com/helexa-ai/helexa-go/internal/redistest"
)

var keysPrefixes atomic.Int64

// keysRedis returns the URL of a Redis for t and a key prefix no other test
// uses: HELEXA_TEST_REDIS_URL when set, else a throwaway redis-server. It
// skips without either, unless HELEXA_REQUIRE_REDIS=1.
func keysRedis(t *testing.T) (url, prefix string) {
	t.Helper()
	prefix = "keystest:" + strconv.FormatInt(time.Now().UnixNano(), 36) + ":" + strconv.FormatInt(keysPrefixes.Add(1), 10) + ":"
	return redistest.URL(t), prefix
}

// keysEnv runs "cortex keys" commands against one Redis and key prefix.
type keysEnv struct {
	t           *testing.T
	url, prefix string
	ledger      *redisledger.Ledger // the same ledger, for checks
	client      *redis.Client
}

func newKeysEnv(t *testing.T) *keysEnv {
	t.Helper()
	url, prefix := keysRedis(t)
	l, err := redisledger.Open(entitlements.RedisConfig{URL: url, KeyPrefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	o, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(o)
	t.Cleanup(func() { _ = c.Close() })
	return &keysEnv{t: t, url: url, prefix: prefix, ledger: l, client: c}
}

// keys runs "cortex keys CMD --redis-url U --key-prefix P ARGS...".
func (e *keysEnv) keys(cmd string, args ...string) (string, error) {
	e.t.Helper()
	var out, errOut bytes.Buffer
	all := append([]string{"keys", cmd, "--redis-url", e.url, "--key-prefix", e.prefix}, args...)
	err := run(e.t.Context(), all, &out, &errOut)
	return out.String(), err
}

// must runs a keys command that must succeed.
func (e *keysEnv) must(cmd string, args ...string) string {
	e.t.Helper()
	out, err := e.keys(cmd, args...)
	if err != nil {
		e.t.Fatalf("cortex keys %s %s: %v\n%s", cmd, strings.Join(args, " "), err, out)
	}
	return out
}

// budget returns account's budget from Redis.
func (e *keysEnv) budget(account string) entitlements.BudgetSnapshot {
	e.t.Helper()
	s, err := e.ledger.Snapshot(e.t.Context(), entitlements.Principal{AccountID: account, KeyID: account})
	if err != nil {
		e.t.Fatalf("Snapshot(%s): %v", account, err)
	}
	return s
}

// checkNotStored fails the test when secret appears in any key or value
// under the env's prefix, and checks that its digest names a key record.
func (e *keysEnv) checkNotStored(secret string) {
	e.t.Helper()
	ctx := e.t.Context()
	names, err := e.client.Keys(ctx, e.prefix+"*").Result()
	if err != nil {
		e.t.Fatal(err)
	}
	d := entitlements.KeyDigest(secret)
	record := false
	for _, name := range names {
		var vals []string
		switch typ := e.client.Type(ctx, name).Val(); typ {
		case "hash":
			for k, v := range e.client.HGetAll(ctx, name).Val() {
				vals = append(vals, k, v)
			}
		case "set":
			vals = e.client.SMembers(ctx, name).Val()
		case "zset":
			vals = e.client.ZRange(ctx, name, 0, -1).Val()
		case "string":
			vals = []string{e.client.Get(ctx, name).Val()}
		default:
			e.t.Fatalf("key %s has type %s", name, typ)
		}
		for _, v := range append(vals, name) {
			if strings.Contains(v, secret) {
				e.t.Errorf("Redis key %s holds the secret", name)
			}
		}
		record = record || strings.HasSuffix(name, ":key:"+hex.EncodeToString(d[:]))
	}
	if !record {
		e.t.Errorf("no key record named by the digest %x among %v", d, names)
	}
}

var keyLine = regexp.MustCompile(`(?m)^key:\s+(sk-\S+)$`)
var digestLine = regexp.MustCompile(`(?m)^digest:\s+([0-9a-f]{64})$`)

// The commands in turn: add prints a key that resolves and whose digest,
// not the key, is stored; list, show, topup, set-cap and revoke act on it.
func TestKeysCommands(t *testing.T) {
	t.Parallel()
	e := newKeysEnv(t)
	ctx := t.Context()

	out := e.must("add", "--account", "acme", "--cap", "1000")
	m := keyLine.FindStringSubmatch(out)
	dm := digestLine.FindStringSubmatch(out)
	if m == nil || dm == nil {
		t.Fatalf("add printed no key or digest:\n%s", out)
	}
	secret, digest := m[1], dm[1]
	if d := entitlements.KeyDigest(secret); hex.EncodeToString(d[:]) != digest {
		t.Errorf("printed digest %s is not the key's %x", digest, d)
	}
	p, err := e.ledger.Resolve(ctx, secret)
	if err != nil {
		t.Fatalf("Resolve(the printed key): %v", err)
	}
	want := entitlements.Principal{AccountID: "acme", KeyID: "acme", Unit: entitlements.UnitTokens}
	if diff := cmp.Diff(p, want); diff != "" {
		t.Errorf("principal (-got +want):\n%s", diff)
	}
	e.checkNotStored(secret)

	// A second key of the account joins its budget; -o json.
	out = e.must("add", "--account", "acme", "--key-id", "acme-ci", "--rpm", "60", "-o", "json")
	var added struct {
		Key    string               `json:"key"`
		Digest string               `json:"digest"`
		KeyID  string               `json:"key_id"`
		Cap    *entitlements.Amount `json:"cap"`
	}
	if err := json.Unmarshal([]byte(out), &added); err != nil {
		t.Fatalf("add -o json: %v\n%s", err, out)
	}
	p2, err := e.ledger.Resolve(ctx, added.Key)
	if err != nil {
		t.Fatalf("Resolve(the second key): %v", err)
	}
	if p2.KeyID != "acme-ci" || p2.Limits.RPM != 60 || added.Cap == nil || *added.Cap != 1000 {
		t.Errorf("second key: principal %+v, cap %v; want key id acme-ci, rpm 60, cap 1000", p2, added.Cap)
	}
	e.checkNotStored(added.Key)

	// Some spend, so that list shows it.
	r, err := e.ledger.Reserve(ctx, p, 30)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Settle(ctx, 25); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ledger.Reserve(ctx, p, 40); err != nil {
		t.Fatal(err)
	}

	out = e.must("list", "-o", "json")
	var listed []struct {
		Account  string               `json:"account"`
		KeyID    string               `json:"key_id"`
		Digest   string               `json:"digest"`
		Unit     string               `json:"unit"`
		Cap      *entitlements.Amount `json:"cap"`
		Spent    entitlements.Amount  `json:"spent"`
		Reserved entitlements.Amount  `json:"reserved"`
		Revoked  *time.Time           `json:"revoked"`
	}
	if err := json.Unmarshal([]byte(out), &listed); err != nil {
		t.Fatalf("list -o json: %v\n%s", err, out)
	}
	type row struct {
		Account, KeyID, Digest, Unit string
		Cap, Spent, Reserved         entitlements.Amount
		Revoked                      bool
	}
	var got []row
	for _, k := range listed {
		got = append(got, row{k.Account, k.KeyID, k.Digest, k.Unit, *k.Cap, k.Spent, k.Reserved, k.Revoked != nil})
	}
	wantRows := []row{
		{"acme", "acme", digest, "tokens", 1000, 25, 40, false},
		{"acme", "acme-ci", added.Digest, "tokens", 1000, 25, 40, false},
	}
	if diff := cmp.Diff(got, wantRows); diff != "" {
		t.Errorf("list -o json (-got +want):\n%s", diff)
	}
	out = e.must("list")
	for _, s := range []string{"ACCOUNT", "KEY ID", "DIGEST", "RESERVED", "REVOKED", digest[:digestPrefixLen], "acme-ci"} {
		if !strings.Contains(out, s) {
			t.Errorf("list table lacks %q:\n%s", s, out)
		}
	}
	if strings.Contains(out, secret) || strings.Contains(out, digest) {
		t.Errorf("list table shows a secret or a whole digest:\n%s", out)
	}

	// show by account and by digest.
	for _, arg := range []string{"acme", digest, added.Digest[:10]} {
		out = e.must("show", arg)
		for _, s := range []string{"account:", "acme", "spent:", "25", "reserved:", "40", "remaining:", "935", "acme-ci"} {
			if !strings.Contains(out, s) {
				t.Errorf("show %s lacks %q:\n%s", arg, s, out)
			}
		}
	}

	e.must("topup", "--account", "acme", "--amount", "500")
	if s := e.budget("acme"); s.HardCap == nil || *s.HardCap != 1500 || s.Spent != 25 {
		t.Errorf("after topup 500: cap %v, spent %d; want 1500, 25", s.HardCap, s.Spent)
	}
	e.must("set-cap", "--account", "acme", "--cap", "200")
	if s := e.budget("acme"); s.HardCap == nil || *s.HardCap != 200 {
		t.Errorf("after set-cap 200: cap %v", s.HardCap)
	}
	e.must("set-cap", "--account", "acme", "--none")
	if s := e.budget("acme"); s.HardCap != nil {
		t.Errorf("after set-cap --none: cap %d", *s.HardCap)
	}

	// revoke by a digest prefix, then by key id.
	e.must("revoke", digest[:12])
	if _, err := e.ledger.Resolve(ctx, secret); !errors.Is(err, entitlements.ErrInvalidKey) {
		t.Errorf("Resolve(revoked key) = %v; want ErrInvalidKey", err)
	}
	if _, err := e.ledger.Resolve(ctx, added.Key); err != nil {
		t.Errorf("Resolve(the other key) after revoking the first: %v", err)
	}
	e.must("revoke", "--account", "acme", "--key-id", "acme-ci")
	if _, err := e.ledger.Resolve(ctx, added.Key); !errors.Is(err, entitlements.ErrInvalidKey) {
		t.Errorf("Resolve(key revoked by key id) = %v; want ErrInvalidKey", err)
	}
	out = e.must("show", "acme", "-o", "json")
	var shown struct {
		Account string `json:"account"`
		Keys    []struct {
			Revoked *time.Time `json:"revoked"`
		} `json:"keys"`
	}
	if err := json.Unmarshal([]byte(out), &shown); err != nil {
		t.Fatalf("show -o json: %v\n%s", err, out)
	}
	if shown.Account != "acme" || len(shown.Keys) != 2 || shown.Keys[0].Revoked == nil || shown.Keys[1].Revoked == nil {
		t.Errorf("show -o json after revoking both keys: %s", out)
	}
}

// An account in US dollars takes dollar amounts and stores micro-dollars.
func TestKeysUSD(t *testing.T) {
	t.Parallel()
	e := newKeysEnv(t)
	out := e.must("add", "--account", "dollars", "--cap-usd", "2.5", "--window", "rolling", "--seconds", "3600")
	m := keyLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("add printed no key:\n%s", out)
	}
	p, err := e.ledger.Resolve(t.Context(), m[1])
	if err != nil || p.Unit != entitlements.UnitMicroUSD {
		t.Fatalf("Resolve = %+v, %v; want unit usd", p, err)
	}
	s := e.budget("dollars")
	if s.HardCap == nil || *s.HardCap != 2_500_000 || s.Window != entitlements.Rolling(3600) {
		t.Errorf("budget: cap %v over %s; want 2500000 over rolling(3600s)", s.HardCap, s.Window)
	}
	if !strings.Contains(e.must("show", "dollars"), "$2.50") {
		t.Errorf("show does not print the cap in dollars")
	}
	e.must("set-cap", "--account", "dollars", "--cap-usd", "4")
	if s := e.budget("dollars"); s.HardCap == nil || *s.HardCap != 4_000_000 {
		t.Errorf("after set-cap --cap-usd 4: cap %v", s.HardCap)
	}
	// A rolling window cannot be topped up; a balance in dollars can.
	if _, err := e.keys("topup", "--account", "dollars", "--amount-usd", "1"); !errors.Is(err, redisledger.ErrNotBalance) {
		t.Errorf("topup of a rolling account: %v; want ErrNotBalance", err)
	}
	e.must("add", "--account", "prepaid", "--unit", "usd", "--cap-usd", "1")
	e.must("topup", "--account", "prepaid", "--amount-usd", "0.25")
	if s := e.budget("prepaid"); s.HardCap == nil || *s.HardCap != 1_250_000 {
		t.Errorf("after topup 0.25 USD: cap %v; want 1250000", s.HardCap)
	}
}

// The Redis of the [entitlements.redis] table of --config, with its key
// prefix.
func TestKeysFromConfig(t *testing.T) {
	t.Parallel()
	e := newKeysEnv(t)
	path := filepath.Join(t.TempDir(), "cortex.toml")
	toml := "[entitlements.redis]\nurl = " + strconv.Quote(e.url) + "\nkey_prefix = " + strconv.Quote(e.prefix) + "\n"
	if err := os.WriteFile(path, []byte(toml), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if err := run(t.Context(), []string{"keys", "add", "--config", path, "--account", "cfg", "--cap", "10"}, &out, &errOut); err != nil {
		t.Fatalf("keys add --config: %v\n%s", err, errOut.String())
	}
	m := keyLine.FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("add printed no key:\n%s", out.String())
	}
	if _, err := e.ledger.Resolve(t.Context(), m[1]); err != nil {
		t.Errorf("the key added through --config does not resolve under the configured prefix: %v", err)
	}
}

func TestKeysErrors(t *testing.T) {
	t.Parallel()
	e := newKeysEnv(t)
	e.must("add", "--account", "acme", "--cap", "100")
	noRedis := filepath.Join(t.TempDir(), "cortex.toml")
	if err := os.WriteFile(noRedis, []byte("[entitlements]\nrequire_auth = true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		args    []string // after "keys"
		wantErr string
	}{
		{name: "no command", args: nil, wantErr: "no command"},
		{name: "unknown command", args: []string{"frobnicate"}, wantErr: "unknown command"},
		{name: "no redis table", args: []string{"list", "--config", noRedis}, wantErr: "no [entitlements.redis]"},
		{name: "add without account", args: e.args("add", "--cap", "1"), wantErr: "--account is required"},
		{name: "add with a bad cap", args: e.args("add", "--account", "x", "--cap", "1.5"), wantErr: "whole number"},
		{name: "add with a rolling window without seconds", args: e.args("add", "--account", "x", "--window", "rolling"), wantErr: "seconds"},
		{name: "add of another unit", args: e.args("add", "--account", "acme", "--unit", "usd"), wantErr: "differs"},
		{name: "add with another budget", args: e.args("add", "--account", "acme", "--cap", "7"), wantErr: "differs"},
		{name: "show unknown account", args: e.args("show", "nobody"), wantErr: "unknown account"},
		{name: "show without argument", args: e.args("show"), wantErr: "want one account"},
		{name: "revoke unknown digest", args: e.args("revoke", strings.Repeat("ab", 32)), wantErr: "unknown key"},
		{name: "revoke with nothing", args: e.args("revoke"), wantErr: "want a key digest"},
		{name: "topup without amount", args: e.args("topup", "--account", "acme"), wantErr: "required"},
		{name: "topup in dollars of a token account", args: e.args("topup", "--account", "acme", "--amount-usd", "1"), wantErr: "counts tokens"},
		{name: "topup of zero", args: e.args("topup", "--account", "acme", "--amount", "0"), wantErr: "invalid amount"},
		{name: "set-cap with two caps", args: e.args("set-cap", "--account", "acme", "--cap", "1", "--none"), wantErr: "want one of"},
		{name: "set-cap of unknown account", args: e.args("set-cap", "--account", "nobody", "--none"), wantErr: "unknown account"},
		{name: "list -o yaml", args: e.args("list", "-o", "yaml"), wantErr: "unknown output"},
		{name: "unreachable redis", args: []string{"list", "--redis-url", "redis://127.0.0.1:1/0"}, wantErr: "unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := run(t.Context(), append([]string{"keys"}, tt.args...), &out, &errOut)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("cortex keys %s: error %v; want one containing %q", strings.Join(tt.args, " "), err, tt.wantErr)
			}
		})
	}
}

// args is "CMD --redis-url U --key-prefix P ARGS...".
func (e *keysEnv) args(cmd string, args ...string) []string {
	return append([]string{cmd, "--redis-url", e.url, "--key-prefix", e.prefix}, args...)
}
