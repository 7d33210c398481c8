package entitlements

import (
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/helexa-ai/helexa-go/internal/config"
)

// Config is the [entitlements] section of cortex.toml. Its toml tags work
// both at the top level of a document (ParseConfig) and nested under an
// "entitlements" field of a larger configuration.
//
//	require_auth = true
//
//	[[keys]]                      # [[entitlements.keys]] in cortex.toml
//	key_sha256 = "9f86d0...0f00a08"
//	account_id = "acme"
//	key_id = "acme-prod"
//	hard_cap = 1_000_000          # tokens per window; absent = uncapped
//	window = { kind = "rolling", seconds = 86400 }
//	max_in_flight = 8
//	models = ["llama-*", "qwen/*"]  # absent = every model
//
//	[[keys]]
//	key = "sk-dev"
//	account_id = "dev"
//	unit = "usd"
//	hard_cap_usd = 25.0           # stored as 25,000,000 micro-dollars
type Config struct {
	// RequireAuth makes a missing or unknown key a 401. When false
	// (the default) such callers are served as Anonymous.
	RequireAuth bool `toml:"require_auth"`
	// StrictCaps makes the gateway reserve an upper bound of a request's
	// prompt (its body's bytes) instead of an estimate, so that no request
	// can spend past a hard cap, at the cost of refusing a nearly spent key
	// earlier. Default false. See cortex.WithStrictCaps.
	StrictCaps bool `toml:"strict_caps"`
	// Keys are the API keys of the Local provider.
	Keys []KeyConfig `toml:"keys"`
	// Redis configures the shared ledger (entitlements/redisledger); nil
	// when the [redis] table is absent.
	Redis *RedisConfig `toml:"redis"`
	// Local makes the Local provider durable (OpenLocal): its keys,
	// budgets and spend are kept in a file and survive a restart. nil
	// when the [local] table is absent: budgets live in memory only.
	// Exclusive with Redis.
	Local *LocalConfig `toml:"local"`
	// House makes the gateway spend budgets kept by a clearing house
	// (entitlements/house): nil when the [house] table is absent.
	// Exclusive with Redis, Local and Keys: the house holds the keys.
	House *HouseConfig `toml:"house"`
}

// HouseConfig is the [house] table ([entitlements.house] in cortex.toml):
// the clearing house the gateway asks, read by entitlements/house.
// Validate checks that URL and TokenFile are set and no duration is
// negative; the house package documents the defaults.
//
//	[house]
//	url = "https://house.example:7400"
//	token_file = "/etc/helexa/house-token"
//	grants = true
type HouseConfig struct {
	// URL is the house, http:// or https://.
	URL string `toml:"url"`
	// TokenFile holds the gateway's bearer token for the house (read at
	// start, surrounding white space trimmed); the token is kept out of
	// cortex.toml and out of every log. A relative path is taken from the
	// directory of cortex.toml.
	TokenFile string `toml:"token_file"`
	// Timeout bounds each attempt of a call to the house; 0: the
	// default.
	Timeout Duration `toml:"timeout"`
	// ResolveTTL and UnknownKeyTTL are how long resolved and unknown keys
	// are cached; ResolveTTL is how long a revoked key keeps working.
	ResolveTTL    Duration `toml:"resolve_ttl"`
	UnknownKeyTTL Duration `toml:"unknown_key_ttl"`
	// Grants turns credit grants on: busy accounts are reserved and
	// settled locally, inside credit held from the house. Default false.
	Grants bool `toml:"grants"`
	// FlushInterval is how often spend inside grants reaches the house;
	// 0: the default.
	FlushInterval Duration `toml:"flush_interval"`
	// GrantJournal, with Grants, is a file where each settle inside a
	// grant is fsynced before it is acknowledged, so that a gateway
	// restarted after a crash reports the spend the crashed one had not
	// (house.GrantConfig.Journal). A relative path is taken from the
	// directory of cortex.toml. Empty: a crash loses up to one
	// flush_interval of spend inside grants.
	GrantJournal string `toml:"grant_journal"`
}

// LocalConfig is the [local] table ([entitlements.local] in cortex.toml):
// the ledger file of the single-process Local provider. See OpenLocal for
// the file's format and guarantees.
//
//	[local]
//	path = "/var/lib/helexa/ledger"
//	sync_interval = "10ms"
type LocalConfig struct {
	// Path is the ledger file, created when missing; a lock file beside
	// it (Path + ".lock") keeps a second process out while one holds it.
	// Required. cortex resolves a relative path against the directory of
	// cortex.toml.
	Path string `toml:"path"`
	// SyncInterval is the longest a settled spend waits before it is
	// written and synced to disk: what a crash can lose. 0 means
	// DefaultSyncInterval (10ms); at most a minute.
	SyncInterval Duration `toml:"sync_interval"`
}

// KeyConfig is one [[keys]] entry.
//
// Exactly one of Key and KeySHA256 is set. Several entries may name the same
// account: they share its budget, so they must repeat the same unit,
// hard_cap and window. Entries may also share a key_id (the old and the new
// secret of a key during a rotation); they must then carry the same limits.
type KeyConfig struct {
	// Key is the secret in plain text. It is hashed when the provider is
	// built and not kept.
	Key string `toml:"key"`
	// KeySHA256 is the hex SHA-256 digest of the secret (64 hex digits,
	// either case), so that the configuration need not hold the secret.
	KeySHA256 string `toml:"key_sha256"`
	// AccountID names the account whose budget the key spends. Required.
	AccountID string `toml:"account_id"`
	// KeyID names the key in logs and metrics. Default: AccountID.
	KeyID string `toml:"key_id"`
	// HardCap is the cap per window in tokens, for unit "tokens". Absent
	// means uncapped (spend is still metered). 0 is a key that can spend
	// nothing; with a rolling window it is rejected as a mistake.
	HardCap *int64 `toml:"hard_cap"`
	// HardCapUSD is the cap per window in US dollars, for unit "usd"; it is
	// stored rounded to whole micro-dollars. Absent means uncapped.
	HardCapUSD *float64 `toml:"hard_cap_usd"`
	// Window is what the cap is counted over. Absent: a balance.
	Window WindowConfig `toml:"window"`
	// Unit is "tokens" (the default when empty) or "usd" (amounts in
	// micro-dollars).
	Unit string `toml:"unit"`
	// ClampMaxTokens, MaxInFlight and RPM are the key's Limits; 0 and false
	// mean no limit.
	ClampMaxTokens bool `toml:"clamp_max_tokens"`
	MaxInFlight    int  `toml:"max_in_flight"`
	RPM            int  `toml:"rpm"`
	// Models lists the models the key may use, as glob patterns over
	// model ids and aliases ("llama-*", "org/*"; see ModelAllowList for
	// the glob). Absent: every model. An empty list is an error.
	Models *[]string `toml:"models"`
}

// WindowConfig is a key's window table: {kind = "balance"} or
// {kind = "rolling", seconds = N}. The zero value is a balance.
type WindowConfig struct {
	// Kind is "balance" (the default when empty) or "rolling".
	Kind string `toml:"kind"`
	// Seconds is the length of a rolling window (> 0); unset for a balance.
	Seconds int64 `toml:"seconds"`
}

// RedisConfig is the [redis] table, read by entitlements/redisledger.
// Validate checks only that URL is set and LeaseTTL is not negative; the
// ledger documents the defaults.
type RedisConfig struct {
	// URL is the Redis server, as redis://[user:pass@]host:port/db.
	URL string `toml:"url"`
	// KeyPrefix is prepended to every Redis key the ledger writes.
	KeyPrefix string `toml:"key_prefix"`
	// LeaseTTL is how long a reservation survives its gateway (a string
	// such as "5m"); 0 means the ledger's default.
	LeaseTTL Duration `toml:"lease_ttl"`
	// FailOpen serves requests without budget checks while Redis is
	// unreachable instead of answering 503. Default false.
	FailOpen bool `toml:"fail_open"`
	// AllowVolatileRedis lets cortex start on a Redis that persists
	// nothing (neither "appendonly yes" nor a "save" rule), or whose
	// persistence it cannot read (CONFIG GET forbidden, as on many managed
	// services). Budgets are only as durable as Redis: a volatile Redis
	// that restarts forgets every spend, and prepaid balances come back.
	// Default false: cortex refuses to start on such a Redis, naming the
	// settings to change.
	AllowVolatileRedis bool `toml:"allow_volatile_redis"`
}

// Duration is a time.Duration written in TOML as a string that
// time.ParseDuration accepts ("30s", "5m"). A bare number is an error that
// names its key and line, since it has no unit. It is the same type as
// neuron.Duration.
type Duration = config.Duration

// ConfigError is one problem in a configuration: a syntax or type error,
// an unknown key or a duration without a unit, found by ParseConfig with
// its Line ("line 4: unknown key "keys.acount_id""), or an invalid value
// found by Validate, with the Entry at fault and File "entitlements
// config" ("entitlements config: keys[3] (account acme): both key and
// key_sha256 set"; keys count from 0). cortex.ConfigError and
// neuron.ConfigError are the same type.
type ConfigError = config.Error

// ParseConfig decodes a TOML document whose top level is the content of the
// [entitlements] table, rejecting unknown fields, then validates it. Decode
// errors are *ConfigError values with the line of the problem (several are
// joined with errors.Join); validation errors are those of Validate.
func ParseConfig(data []byte) (Config, error) {
	var c Config
	if errs := config.Decode(data, &c, config.Options{}); len(errs) > 0 {
		return Config{}, config.Join(errs)
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Validate checks c and returns every problem found, each a *ConfigError
// naming its entry, joined with errors.Join; nil when c is valid.
func (c Config) Validate() error {
	_, err := c.APIKeys()
	return err
}

// APIKeys validates c and returns its keys in resolved form, in order: the
// digest of each secret, its principal (KeyID defaulted to AccountID) and its
// account's budget (USD caps converted to micro-dollars). The error is
// Validate's.
func (c Config) APIKeys() ([]Key, error) {
	var errs []error
	keys := make([]Key, 0, len(c.Keys))
	type first struct {
		index int
		key   Key
	}
	digests := make(map[[32]byte]int, len(c.Keys))
	accounts := make(map[string]first)
	keyIDs := make(map[[2]string]first)
	for i, kc := range c.Keys {
		entry := "keys[" + strconv.Itoa(i) + "]"
		if kc.AccountID != "" {
			entry += " (account " + kc.AccountID + ")"
		}
		bad := func(format string, args ...any) {
			errs = append(errs, &ConfigError{Entry: entry, Msg: fmt.Sprintf(format, args...)})
		}
		k, problems := kc.resolve()
		for _, p := range problems {
			bad("%s", p)
		}
		if len(problems) > 0 {
			continue
		}
		if j, dup := digests[k.Digest]; dup {
			bad("same key as keys[%d]", j)
			continue
		}
		digests[k.Digest] = i
		acct, seen := accounts[k.Principal.AccountID]
		switch {
		case !seen:
			accounts[k.Principal.AccountID] = first{i, k}
		case acct.key.Principal.Unit != k.Principal.Unit:
			bad("unit %q differs from keys[%d] of the same account (a budget belongs to the account)", k.Principal.Unit, acct.index)
			continue
		case !sameBudget(acct.key.Budget, k.Budget):
			bad("hard cap or window differs from keys[%d] of the same account (a budget belongs to the account)", acct.index)
			continue
		}
		id := [2]string{k.Principal.AccountID, k.Principal.KeyID}
		if prev, seen := keyIDs[id]; !seen {
			keyIDs[id] = first{i, k}
		} else if prev.key.Principal != k.Principal {
			bad("limits differ from keys[%d], which has the same key_id %q", prev.index, k.Principal.KeyID)
			continue
		}
		keys = append(keys, k)
	}
	if r := c.Redis; r != nil {
		if r.URL == "" {
			errs = append(errs, &ConfigError{Entry: "redis", Msg: "url is required"})
		}
		if r.LeaseTTL < 0 {
			errs = append(errs, &ConfigError{Entry: "redis", Msg: "lease_ttl must not be negative"})
		}
	}
	if lc := c.Local; lc != nil {
		if lc.Path == "" {
			errs = append(errs, &ConfigError{Entry: "local", Msg: "path is required"})
		}
		if lc.SyncInterval < 0 || time.Duration(lc.SyncInterval) > maxSyncInterval {
			errs = append(errs, &ConfigError{Entry: "local", Msg: "sync_interval must be from 0 to 1m"})
		}
		if c.Redis != nil {
			errs = append(errs, &ConfigError{Entry: "local", Msg: "a [local] ledger file and a [redis] ledger exclude each other: keep one"})
		}
	}
	if hc := c.House; hc != nil {
		if hc.URL == "" || hc.TokenFile == "" {
			errs = append(errs, &ConfigError{Entry: "house", Msg: "url and token_file are required"})
		}
		if hc.Timeout < 0 || hc.ResolveTTL < 0 || hc.UnknownKeyTTL < 0 || hc.FlushInterval < 0 {
			errs = append(errs, &ConfigError{Entry: "house", Msg: "durations must not be negative"})
		}
		if c.Redis != nil || c.Local != nil || len(c.Keys) > 0 {
			errs = append(errs, &ConfigError{Entry: "house", Msg: "a [house] excludes [redis], [local] and [[keys]]: the house holds the keys and budgets"})
		}
	}
	if len(errs) > 0 {
		for _, e := range errs {
			e.(*ConfigError).File = "entitlements config"
		}
		return nil, errors.Join(errs...)
	}
	return keys, nil
}

// resolve turns one entry into a Key, or lists what is wrong with it.
func (kc KeyConfig) resolve() (Key, []string) {
	var problems []string
	var k Key
	switch {
	case kc.Key != "" && kc.KeySHA256 != "":
		problems = append(problems, "both key and key_sha256 set")
	case kc.Key == "" && kc.KeySHA256 == "":
		problems = append(problems, "neither key nor key_sha256 set")
	case kc.Key != "":
		k.Digest = KeyDigest(kc.Key)
	default:
		b, err := hex.DecodeString(kc.KeySHA256)
		if err != nil || len(b) != len(k.Digest) {
			problems = append(problems, "key_sha256 is not a hex SHA-256 digest (64 hex digits)")
		}
		copy(k.Digest[:], b)
	}
	if kc.AccountID == "" {
		problems = append(problems, "account_id is required")
	}
	k.Principal = Principal{
		AccountID: kc.AccountID,
		KeyID:     kc.KeyID,
		Limits:    Limits{ClampMaxTokens: kc.ClampMaxTokens, MaxInFlight: kc.MaxInFlight, RPM: kc.RPM},
	}
	if k.Principal.KeyID == "" {
		k.Principal.KeyID = kc.AccountID
	}
	if kc.Models != nil {
		allow, err := NewModelAllowList(*kc.Models...)
		if err != nil {
			problems = append(problems, strings.TrimPrefix(err.Error(), "entitlements: bad model pattern: "))
		}
		k.Principal.Limits.Models = allow
	}
	if kc.MaxInFlight < 0 {
		problems = append(problems, "max_in_flight must not be negative")
	}
	if kc.RPM < 0 {
		problems = append(problems, "rpm must not be negative")
	}

	switch kc.Window.Kind {
	case "", "balance":
		if kc.Window.Seconds != 0 {
			if kc.Window.Kind == "" {
				problems = append(problems, `window has seconds but no kind (want kind = "rolling")`)
			} else {
				problems = append(problems, "window seconds set on a balance window")
			}
		}
		k.Budget.Window = Balance()
	case "rolling":
		k.Budget.Window = Rolling(kc.Window.Seconds)
		if msg := k.Budget.Window.validate(); msg != "" {
			problems = append(problems, msg)
		}
	default:
		problems = append(problems, fmt.Sprintf("unknown window kind %q (want \"balance\" or \"rolling\")", kc.Window.Kind))
	}

	switch kc.Unit {
	case "", "tokens":
		k.Principal.Unit = UnitTokens
		if kc.HardCapUSD != nil {
			problems = append(problems, `hard_cap_usd needs unit = "usd" (use hard_cap for tokens)`)
		}
		if kc.HardCap != nil {
			k.Budget.HardCap = Cap(Amount(*kc.HardCap))
		}
	case "usd":
		k.Principal.Unit = UnitMicroUSD
		if kc.HardCap != nil {
			problems = append(problems, `hard_cap is in tokens; use hard_cap_usd with unit = "usd"`)
		}
		if kc.HardCapUSD != nil {
			v := *kc.HardCapUSD
			micro := math.Round(v * 1e6)
			switch {
			case math.IsNaN(v) || math.IsInf(v, 0) || micro >= math.MaxInt64:
				problems = append(problems, "hard_cap_usd is out of range")
			default:
				k.Budget.HardCap = Cap(Amount(micro))
			}
		}
	default:
		problems = append(problems, fmt.Sprintf("unknown unit %q (want \"tokens\" or \"usd\")", kc.Unit))
	}
	if c := k.Budget.HardCap; c != nil {
		switch {
		case *c < 0:
			problems = append(problems, "hard cap must not be negative")
		case *c == 0 && k.Budget.Window.Kind == WindowRolling:
			problems = append(problems, "hard cap 0 with a rolling window can never be spent (use a balance of 0 to disable a key)")
		}
	}
	return k, problems
}

func sameBudget(a, b Budget) bool {
	if a.Window != b.Window || (a.HardCap == nil) != (b.HardCap == nil) {
		return false
	}
	return a.HardCap == nil || *a.HardCap == *b.HardCap
}
