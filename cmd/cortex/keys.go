package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/entitlements/redisledger"
	"github.com/helexa-ai/helexa-go/internal/config"
)

const keysUsage = `usage: cortex keys COMMAND [--config cortex.toml | --redis-url URL [--key-prefix P] | --ledger FILE] ...
  add --account A [--key-id K] [--unit tokens|usd] [--cap N | --cap-usd X]
      [--window balance|rolling --seconds N] [--max-in-flight N] [--rpm N] [--clamp-max-tokens]
  list [-o table|json]
  show ACCOUNT|DIGEST [-o table|json]
  revoke DIGEST | revoke --account A --key-id K
  topup --account A (--amount N | --amount-usd X)
  set-cap --account A (--cap N | --cap-usd X | --none)
Amounts are tokens, or US dollars for an account whose unit is usd. A DIGEST
may be shortened to a unique prefix of at least 8 hex digits. A ledger file
([entitlements.local], or --ledger) is opened by one process at a time: stop
cortex before managing its keys.`

// keysTimeout bounds one keys command's work against Redis.
const keysTimeout = 30 * time.Second

// keyStore is what "cortex keys" manages: the Redis ledger
// (*redisledger.Ledger) or a ledger file (*entitlements.Local), which
// have these methods with the same meaning and errors.
type keyStore interface {
	Account(ctx context.Context, id string) (entitlements.Account, error)
	CreateKey(ctx context.Context, nk entitlements.NewKey) (string, entitlements.KeyInfo, error)
	Key(ctx context.Context, d [sha256.Size]byte) (entitlements.KeyInfo, error)
	Keys(ctx context.Context) ([]entitlements.KeyInfo, error)
	RevokeKey(ctx context.Context, d [sha256.Size]byte) (entitlements.KeyInfo, error)
	RevokeKeyID(ctx context.Context, account, keyID string) ([]entitlements.KeyInfo, error)
	TopUp(ctx context.Context, account string, amount entitlements.Amount) (entitlements.BudgetSnapshot, error)
	SetCap(ctx context.Context, account string, hardCap *entitlements.Amount) (entitlements.BudgetSnapshot, error)
	Close() error
}

var (
	_ keyStore = (*redisledger.Ledger)(nil)
	_ keyStore = (*entitlements.Local)(nil)
)

// keysCmd is one "cortex keys" command: its flags, with the Redis ones
// every command shares, and what it does.
type keysCmd struct {
	fs                          *flag.FlagSet
	config, redisURL, prefix    *string
	ledger                      *string
	stdout                      io.Writer
	positional                  []string
	run                         func(ctx context.Context, l keyStore) error
	account, keyID, unit, win   string
	capFlag, capUSD, amount     string
	amountUSD, output           string
	seconds                     int64
	inFlight, rpm               int
	clamp, none, capSet, usdSet bool
}

// runKeys is "cortex keys": key management against the ledger named by
// --config (its [entitlements.redis] table, else its [entitlements.local]
// one), by --redis-url or by --ledger.
func runKeys(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintln(stderr, keysUsage)
		if len(args) == 0 {
			return errors.New("keys: no command")
		}
		return nil
	}
	c := &keysCmd{fs: flag.NewFlagSet("cortex keys "+args[0], flag.ContinueOnError), stdout: stdout}
	c.fs.SetOutput(stderr)
	c.fs.Usage = func() {
		fmt.Fprintln(stderr, keysUsage)
		fmt.Fprintf(stderr, "\nflags of cortex keys %s:\n", args[0])
		c.fs.PrintDefaults()
	}
	c.config = c.fs.String("config", "cortex.toml", "path of the cortex.toml whose [entitlements.redis] or [entitlements.local] names the ledger")
	c.redisURL = c.fs.String("redis-url", "", "Redis URL of the ledger (instead of --config)")
	c.ledger = c.fs.String("ledger", "", "path of a ledger file (instead of --config)")
	c.prefix = c.fs.String("key-prefix", "", "key prefix of the ledger (default: the configuration's, else \"helexa:\")")
	switch args[0] {
	case "add":
		c.accountFlags(true)
		c.capFlags()
		c.fs.StringVar(&c.unit, "unit", "", "unit of a new account: tokens or usd (default: the account's, else tokens)")
		c.fs.StringVar(&c.win, "window", "", "window of a new account: balance (default) or rolling")
		c.fs.Int64Var(&c.seconds, "seconds", 0, "length of a rolling window in seconds")
		c.fs.IntVar(&c.inFlight, "max-in-flight", 0, "requests the key may have in flight per gateway; 0: no limit")
		c.fs.IntVar(&c.rpm, "rpm", 0, "requests per minute the key may make per gateway; 0: no limit")
		c.fs.BoolVar(&c.clamp, "clamp-max-tokens", false, "lower a request's maximum output to what the budget has left")
		c.fs.StringVar(&c.output, "o", "text", "output: text or json")
		c.run = c.add
	case "list":
		c.fs.StringVar(&c.output, "o", "table", "output: table or json")
		c.run = c.list
	case "show":
		c.fs.StringVar(&c.output, "o", "table", "output: table or json")
		c.run = c.show
	case "revoke":
		c.accountFlags(true)
		c.run = c.revoke
	case "topup":
		c.accountFlags(false)
		c.fs.StringVar(&c.amount, "amount", "", "amount to add, in tokens")
		c.fs.StringVar(&c.amountUSD, "amount-usd", "", "amount to add, in US dollars")
		c.run = c.topUp
	case "set-cap":
		c.accountFlags(false)
		c.capFlags()
		c.fs.BoolVar(&c.none, "none", false, "remove the cap")
		c.run = c.setCap
	default:
		fmt.Fprintln(stderr, keysUsage)
		return fmt.Errorf("keys: unknown command %q", args[0])
	}
	if err := c.parse(args[1:]); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, keysTimeout)
	defer cancel()
	l, err := c.open(ctx)
	if err != nil {
		return err
	}
	if err := c.run(ctx, l); err != nil {
		return errors.Join(fmt.Errorf("keys %s: %w", args[0], err), l.Close())
	}
	if err := l.Close(); err != nil {
		return fmt.Errorf("keys %s: writing the ledger: %w", args[0], err)
	}
	return nil
}

func (c *keysCmd) accountFlags(keyID bool) {
	c.fs.StringVar(&c.account, "account", "", "account id")
	if keyID {
		c.fs.StringVar(&c.keyID, "key-id", "", "key id (default: the account id)")
	}
}

func (c *keysCmd) capFlags() {
	c.fs.StringVar(&c.capFlag, "cap", "", "hard cap in tokens (per window, or the total balance)")
	c.fs.StringVar(&c.capUSD, "cap-usd", "", "hard cap in US dollars, for an account whose unit is usd")
}

// parse parses flags and positional arguments in any order.
func (c *keysCmd) parse(args []string) error {
	for {
		if err := c.fs.Parse(args); err != nil {
			return err
		}
		args = c.fs.Args()
		if len(args) == 0 {
			break
		}
		c.positional = append(c.positional, args[0])
		args = args[1:]
	}
	c.fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "cap", "cap-usd":
			c.capSet = true
			c.usdSet = c.usdSet || f.Name == "cap-usd"
		case "amount-usd":
			c.usdSet = true
		}
	})
	return nil
}

// open opens the ledger of --redis-url, of --ledger, or of --config's
// [entitlements.redis] or [entitlements.local] table.
func (c *keysCmd) open(ctx context.Context) (keyStore, error) {
	var rc entitlements.RedisConfig
	var lc *entitlements.LocalConfig
	switch {
	case *c.redisURL != "" && *c.ledger != "":
		return nil, errors.New("keys: give --redis-url or --ledger, not both")
	case *c.redisURL != "":
		rc.URL = *c.redisURL
	case *c.ledger != "":
		lc = &entitlements.LocalConfig{Path: *c.ledger}
	default:
		// Only the ledger's table is read: the rest of the file need not
		// be complete.
		data, err := os.ReadFile(*c.config)
		if err != nil {
			return nil, fmt.Errorf("keys: %w", err)
		}
		var cfg struct {
			Entitlements struct {
				Redis *entitlements.RedisConfig `toml:"redis"`
				Local *entitlements.LocalConfig `toml:"local"`
			} `toml:"entitlements"`
		}
		if errs := config.Decode(data, &cfg, config.Options{File: *c.config, Lax: true}); len(errs) > 0 {
			return nil, fmt.Errorf("keys: %w", config.Join(errs))
		}
		switch e := cfg.Entitlements; {
		case e.Redis != nil && e.Redis.URL != "":
			rc = *e.Redis
		case e.Local != nil && e.Local.Path != "":
			lc = &entitlements.LocalConfig{Path: resolvePath(filepath.Dir(*c.config), e.Local.Path)}
		default:
			return nil, fmt.Errorf("keys: %s has no [entitlements.redis] table with a url nor [entitlements.local] with a path; give --redis-url or --ledger", *c.config)
		}
	}
	if lc != nil {
		l, err := entitlements.OpenLocal(entitlements.Config{Local: lc})
		if errors.Is(err, entitlements.ErrLedgerLocked) {
			return nil, fmt.Errorf("keys: %w: stop cortex, which holds it while it runs, then retry", err)
		}
		if err != nil {
			return nil, fmt.Errorf("keys: %w", err)
		}
		return l, nil
	}
	if *c.prefix != "" {
		rc.KeyPrefix = *c.prefix
	}
	l, err := redisledger.Open(rc)
	if err != nil {
		return nil, err
	}
	if err := l.Ping(ctx); err != nil {
		return nil, errors.Join(fmt.Errorf("keys: %w", err), l.Close())
	}
	return l, nil
}

// needAccount returns an error when --account is missing or there are
// positional arguments the command does not take.
func (c *keysCmd) needAccount() error {
	if c.account == "" {
		return errors.New("--account is required")
	}
	if len(c.positional) > 0 {
		return fmt.Errorf("unexpected argument %q", c.positional[0])
	}
	return nil
}

// add is "cortex keys add": a new key, printed once.
func (c *keysCmd) add(ctx context.Context, l keyStore) error {
	if err := c.needAccount(); err != nil {
		return err
	}
	if c.output != "text" && c.output != "json" {
		return fmt.Errorf("unknown output %q: want text or json", c.output)
	}
	cur, err := l.Account(ctx, c.account)
	exists := err == nil
	if err != nil && !errors.Is(err, entitlements.ErrUnknownAccount) {
		return err
	}
	unit := c.unit
	switch {
	case unit != "":
	case exists:
		unit = cur.Unit.String()
	case c.usdSet:
		unit = entitlements.UnitMicroUSD.String()
	}
	kc := entitlements.KeyConfig{
		Key: "placeholder", AccountID: c.account, KeyID: c.keyID, Unit: unit,
		Window:         entitlements.WindowConfig{Kind: c.win, Seconds: c.seconds},
		ClampMaxTokens: c.clamp, MaxInFlight: c.inFlight, RPM: c.rpm,
	}
	if c.capFlag != "" {
		n, err := strconv.ParseInt(c.capFlag, 10, 64)
		if err != nil {
			return fmt.Errorf("--cap %q: want a whole number of tokens", c.capFlag)
		}
		kc.HardCap = &n
	}
	if c.capUSD != "" {
		x, err := strconv.ParseFloat(c.capUSD, 64)
		if err != nil {
			return fmt.Errorf("--cap-usd %q: want a number of dollars", c.capUSD)
		}
		kc.HardCapUSD = &x
	}
	keys, err := entitlements.Config{Keys: []entitlements.KeyConfig{kc}}.APIKeys()
	if err != nil {
		return err
	}
	nk := entitlements.NewKey{Principal: keys[0].Principal}
	if !exists || c.capSet || c.win != "" {
		nk.Budget = &keys[0].Budget // a new account, or a budget that must match
	}
	secret, info, err := l.CreateKey(ctx, nk)
	if err != nil {
		return err
	}
	a, err := l.Account(ctx, c.account)
	if err != nil {
		return err
	}
	if c.output == "json" {
		return writeJSON(c.stdout, struct {
			Key string `json:"key"`
			keyJSON
		}{secret, newKeyJSON(info, a)})
	}
	w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "key:\t%s\n", secret)
	fmt.Fprintf(w, "account:\t%s\n", info.Principal.AccountID)
	fmt.Fprintf(w, "key id:\t%s\n", info.Principal.KeyID)
	fmt.Fprintf(w, "digest:\t%s\n", info.DigestHex())
	fmt.Fprintf(w, "budget:\t%s over %s\n", capString(a.Unit, a.Budget.HardCap), a.Budget.Window)
	if err := w.Flush(); err != nil {
		return err
	}
	_, err = fmt.Fprintln(c.stdout, "The key is shown only this once: store it now. The ledger keeps only its SHA-256 digest.")
	return err
}

// list is "cortex keys list": every key with its account's budget.
func (c *keysCmd) list(ctx context.Context, l keyStore) error {
	if len(c.positional) > 0 {
		return fmt.Errorf("unexpected argument %q", c.positional[0])
	}
	keys, err := l.Keys(ctx)
	if err != nil {
		return err
	}
	accounts := make(map[string]entitlements.Account)
	for _, k := range keys {
		id := k.Principal.AccountID
		if _, ok := accounts[id]; ok {
			continue
		}
		a, err := l.Account(ctx, id)
		if err != nil {
			return err
		}
		accounts[id] = a
	}
	return c.printKeys(keys, accounts)
}

// printKeys prints keys as a table or JSON (-o).
func (c *keysCmd) printKeys(keys []entitlements.KeyInfo, accounts map[string]entitlements.Account) error {
	switch c.output {
	case "json":
		out := make([]keyJSON, 0, len(keys))
		for _, k := range keys {
			out = append(out, newKeyJSON(k, accounts[k.Principal.AccountID]))
		}
		return writeJSON(c.stdout, out)
	case "table":
	default:
		return fmt.Errorf("unknown output %q: want table or json", c.output)
	}
	w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ACCOUNT\tKEY ID\tDIGEST\tUNIT\tWINDOW\tCAP\tSPENT\tRESERVED\tREVOKED")
	for _, k := range keys {
		a := accounts[k.Principal.AccountID]
		revoked := "-"
		if k.Revoked() {
			revoked = k.RevokedAt.Format(time.RFC3339)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.Principal.AccountID, k.Principal.KeyID,
			k.DigestHex()[:digestPrefixLen], a.Unit, a.Budget.Window, capString(a.Unit, a.Budget.HardCap),
			amountString(a.Unit, a.Budget.Spent), amountString(a.Unit, a.Budget.Reserved), revoked)
	}
	return w.Flush()
}

// digestPrefixLen is how many hex digits of a digest the table shows.
const digestPrefixLen = 12

// show is "cortex keys show ACCOUNT|DIGEST": an account's budget and keys.
func (c *keysCmd) show(ctx context.Context, l keyStore) error {
	if len(c.positional) != 1 {
		return errors.New("want one account id or key digest")
	}
	id := c.positional[0]
	if looksLikeDigest(id) {
		k, err := findKey(ctx, l, id)
		if err == nil {
			id = k.Principal.AccountID
		} else if !errors.Is(err, entitlements.ErrUnknownKey) {
			return err
		}
	}
	a, err := l.Account(ctx, id)
	if err != nil {
		return err
	}
	if c.output == "json" {
		keys := make([]keyJSON, 0, len(a.Keys))
		for _, k := range a.Keys {
			keys = append(keys, newKeyJSON(k, a))
		}
		return writeJSON(c.stdout, struct {
			budgetJSON
			ExpiredLeases int64     `json:"expired_leases"`
			Keys          []keyJSON `json:"keys"`
		}{newBudgetJSON(a), a.ExpiredLeases, keys})
	}
	if c.output != "table" {
		return fmt.Errorf("unknown output %q: want table or json", c.output)
	}
	w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "account:\t%s\n", a.ID)
	fmt.Fprintf(w, "unit:\t%s\n", a.Unit)
	fmt.Fprintf(w, "window:\t%s\n", a.Budget.Window)
	fmt.Fprintf(w, "cap:\t%s\n", capString(a.Unit, a.Budget.HardCap))
	fmt.Fprintf(w, "spent:\t%s\n", amountString(a.Unit, a.Budget.Spent))
	fmt.Fprintf(w, "reserved:\t%s\n", amountString(a.Unit, a.Budget.Reserved))
	if r, capped := a.Budget.Remaining(); capped {
		fmt.Fprintf(w, "remaining:\t%s\n", amountString(a.Unit, r))
	}
	if !a.Budget.ResetsAt.IsZero() {
		fmt.Fprintf(w, "resets at:\t%s\n", a.Budget.ResetsAt.Format(time.RFC3339))
	}
	fmt.Fprintf(w, "expired leases:\t%d\n", a.ExpiredLeases)
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(c.stdout)
	return c.printKeys(a.Keys, map[string]entitlements.Account{a.ID: a})
}

// revoke is "cortex keys revoke": one key by digest, or every key of an
// account with a key id.
func (c *keysCmd) revoke(ctx context.Context, l keyStore) error {
	var revoked []entitlements.KeyInfo
	switch {
	case len(c.positional) == 1 && c.account == "" && c.keyID == "":
		k, err := findKey(ctx, l, c.positional[0])
		if err != nil {
			return err
		}
		if k, err = l.RevokeKey(ctx, k.Digest); err != nil {
			return err
		}
		revoked = append(revoked, k)
	case len(c.positional) == 0 && c.account != "":
		keyID := c.keyID
		if keyID == "" {
			keyID = c.account
		}
		ks, err := l.RevokeKeyID(ctx, c.account, keyID)
		if err != nil {
			return err
		}
		revoked = ks
	default:
		return errors.New("want a key digest, or --account and --key-id")
	}
	if len(revoked) == 0 {
		_, err := fmt.Fprintln(c.stdout, "already revoked")
		return err
	}
	for _, k := range revoked {
		if _, err := fmt.Fprintf(c.stdout, "revoked %s (account %s, key id %s)\n", k.DigestHex(), k.Principal.AccountID, k.Principal.KeyID); err != nil {
			return err
		}
	}
	return nil
}

// topUp is "cortex keys topup": add to a balance.
func (c *keysCmd) topUp(ctx context.Context, l keyStore) error {
	if err := c.needAccount(); err != nil {
		return err
	}
	a, err := l.Account(ctx, c.account)
	if err != nil {
		return err
	}
	amount, err := unitAmount(a.Unit, "amount", c.amount, c.amountUSD)
	if err != nil {
		return err
	}
	if amount == nil {
		return errors.New("--amount (tokens) or --amount-usd (dollars) is required")
	}
	snap, err := l.TopUp(ctx, c.account, *amount)
	if err != nil {
		return err
	}
	r, _ := snap.Remaining()
	_, err = fmt.Fprintf(c.stdout, "account %s: cap %s, spent %s, remaining %s\n", c.account,
		capString(a.Unit, snap.HardCap), amountString(a.Unit, snap.Spent), amountString(a.Unit, r))
	return err
}

// setCap is "cortex keys set-cap": set or remove an account's cap.
func (c *keysCmd) setCap(ctx context.Context, l keyStore) error {
	if err := c.needAccount(); err != nil {
		return err
	}
	a, err := l.Account(ctx, c.account)
	if err != nil {
		return err
	}
	hardCap, err := unitAmount(a.Unit, "cap", c.capFlag, c.capUSD)
	if err != nil {
		return err
	}
	if (hardCap == nil) != c.none {
		return errors.New("want one of --cap, --cap-usd and --none")
	}
	snap, err := l.SetCap(ctx, c.account, hardCap)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(c.stdout, "account %s: cap %s over %s, spent %s, reserved %s\n", c.account,
		capString(a.Unit, snap.HardCap), snap.Window, amountString(a.Unit, snap.Spent), amountString(a.Unit, snap.Reserved))
	return err
}

// unitAmount parses the --NAME (tokens) or --NAME-usd (dollars) flag for an
// account of unit u; nil when neither is given.
func unitAmount(u entitlements.Unit, name, tokens, usd string) (*entitlements.Amount, error) {
	switch {
	case tokens != "" && usd != "":
		return nil, fmt.Errorf("give --%s or --%s-usd, not both", name, name)
	case tokens != "":
		if u != entitlements.UnitTokens {
			return nil, fmt.Errorf("the account counts US dollars: give --%s-usd", name)
		}
		n, err := strconv.ParseInt(tokens, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("--%s %q: want a whole number of tokens", name, tokens)
		}
		return entitlements.Cap(entitlements.Amount(n)), nil
	case usd != "":
		if u != entitlements.UnitMicroUSD {
			return nil, fmt.Errorf("the account counts tokens: give --%s", name)
		}
		x, err := strconv.ParseFloat(usd, 64)
		micro := math.Round(x * 1e6)
		if err != nil || math.IsNaN(micro) || micro < 0 || micro > float64(redisledger.MaxAmount) {
			return nil, fmt.Errorf("--%s-usd %q: want a number of dollars from 0 to %s", name, usd, amountString(u, redisledger.MaxAmount))
		}
		return entitlements.Cap(entitlements.Amount(micro)), nil
	}
	return nil, nil
}

// looksLikeDigest reports whether s may be a key digest or a prefix of one.
func looksLikeDigest(s string) bool {
	if len(s) < 8 || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !strings.ContainsRune("0123456789abcdefABCDEF", r) {
			return false
		}
	}
	return true
}

// findKey returns the key whose digest is s, or starts with s (at least 8
// hex digits, and only one key).
func findKey(ctx context.Context, l keyStore, s string) (entitlements.KeyInfo, error) {
	if d, err := entitlements.ParseDigest(s); err == nil {
		return l.Key(ctx, d)
	}
	if !looksLikeDigest(s) {
		return entitlements.KeyInfo{}, fmt.Errorf("%q is not a key digest (hex, at least 8 digits)", s)
	}
	keys, err := l.Keys(ctx)
	if err != nil {
		return entitlements.KeyInfo{}, err
	}
	var found []entitlements.KeyInfo
	for _, k := range keys {
		if strings.HasPrefix(k.DigestHex(), strings.ToLower(s)) {
			found = append(found, k)
		}
	}
	switch len(found) {
	case 0:
		return entitlements.KeyInfo{}, fmt.Errorf("%w: no digest starts with %s", entitlements.ErrUnknownKey, s)
	case 1:
		return found[0], nil
	}
	return entitlements.KeyInfo{}, fmt.Errorf("%d keys have digests starting with %s: give more digits", len(found), s)
}

// amountString formats an amount of unit u: tokens, or dollars and cents.
func amountString(u entitlements.Unit, a entitlements.Amount) string {
	if u != entitlements.UnitMicroUSD {
		return strconv.FormatInt(int64(a), 10)
	}
	return cortex.FormatUSD(int64(a))
}

// capString formats a cap, "none" when uncapped.
func capString(u entitlements.Unit, c *entitlements.Amount) string {
	if c == nil {
		return "none"
	}
	return amountString(u, *c)
}

// budgetJSON is an account's budget in -o json; amounts are integers in the
// unit (tokens, or micro-dollars for "usd"), cap null when uncapped.
type budgetJSON struct {
	Account  string               `json:"account"`
	Unit     string               `json:"unit"`
	Window   string               `json:"window"`
	Seconds  int64                `json:"window_seconds,omitempty"`
	Cap      *entitlements.Amount `json:"cap"`
	Spent    entitlements.Amount  `json:"spent"`
	Reserved entitlements.Amount  `json:"reserved"`
}

func newBudgetJSON(a entitlements.Account) budgetJSON {
	return budgetJSON{
		Account: a.ID, Unit: a.Unit.String(), Window: a.Budget.Window.Kind.String(), Seconds: a.Budget.Window.Seconds,
		Cap: a.Budget.HardCap, Spent: a.Budget.Spent, Reserved: a.Budget.Reserved,
	}
}

// keyJSON is one key in -o json, with its account's budget.
type keyJSON struct {
	budgetJSON
	KeyID   string     `json:"key_id"`
	Digest  string     `json:"digest"`
	Created time.Time  `json:"created"`
	Revoked *time.Time `json:"revoked"`
}

func newKeyJSON(k entitlements.KeyInfo, a entitlements.Account) keyJSON {
	j := keyJSON{budgetJSON: newBudgetJSON(a), KeyID: k.Principal.KeyID, Digest: k.DigestHex(), Created: k.CreatedAt}
	j.Account = k.Principal.AccountID
	if k.Revoked() {
		j.Revoked = &k.RevokedAt
	}
	return j
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
