package metering

import (
	"errors"
	"sync"

	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/prometheus/client_golang/prometheus"
)

// Collector returns a Prometheus collector of the sink's counters:
//
//	helexa_meter_records_written_total   records written to the file
//	helexa_meter_records_dropped_total   records dropped (see Dropped)
//	helexa_meter_write_errors_total      failed writes, opens, rotations...
//	helexa_meter_buffered_records        records waiting for the writer
//
// The series have no labels. To register the collectors of two sinks in one
// registry, give each a constant label with prometheus.WrapRegistererWith.
func (s *FileSink) Collector() prometheus.Collector {
	return &sinkCollector{
		s: s,
		written: prometheus.NewDesc("helexa_meter_records_written_total",
			"Meter records written to the meter file.", nil, nil),
		dropped: prometheus.NewDesc("helexa_meter_records_dropped_total",
			"Meter records dropped: buffer full, sink closed, or lost to a write error.", nil, nil),
		errors: prometheus.NewDesc("helexa_meter_write_errors_total",
			"Failed writes, opens, closes, rotations and encodings of the meter file.", nil, nil),
		buffered: prometheus.NewDesc("helexa_meter_buffered_records",
			"Meter records waiting for the writer.", nil, nil),
	}
}

type sinkCollector struct {
	s                                  *FileSink
	written, dropped, errors, buffered *prometheus.Desc
}

// Describe implements prometheus.Collector.
func (c *sinkCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.written
	ch <- c.dropped
	ch <- c.errors
	ch <- c.buffered
}

// Collect implements prometheus.Collector.
func (c *sinkCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.written, prometheus.CounterValue, float64(c.s.Written()))
	ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, float64(c.s.Dropped()))
	ch <- prometheus.MustNewConstMetric(c.errors, prometheus.CounterValue, float64(c.s.WriteErrors()))
	ch <- prometheus.MustNewConstMetric(c.buffered, prometheus.GaugeValue, float64(len(c.s.ch)))
}

// OverflowAccount is the account label under which AccountSpend counts the
// accounts beyond its WithMaxAccounts limit: "_other".
const OverflowAccount = "_other"

// AccountSpend is an opt-in Meter that counts, per account, in Prometheus:
//
//	helexa_account_tokens_total{account, kind="prompt"|"completion"}
//	helexa_account_spend_total{account, unit="tokens"|"usd"}
//
// Spend is the settled amount: tokens, or US dollars for accounts whose
// unit is micro-dollars. Records of anonymous callers (empty AccountID) are
// not counted, nor are negative amounts.
//
// Cardinality: every account is a label value, so these series grow with
// the number of accounts that make requests and are never removed while the
// process runs. Enable AccountSpend only when the accounts are few (a fleet
// serving a handful of teams, not a public API with an account per user), and
// bound it with WithMaxAccounts. For per-account billing use the records of
// a FileSink, not Prometheus.
//
// An *AccountSpend is safe for concurrent use; Record takes a read lock and
// updates atomic counters, and briefly takes a write lock the first time it
// sees an account.
type AccountSpend struct {
	tokens, spend *prometheus.CounterVec
	maxAccounts   int

	mu       sync.RWMutex
	accounts map[accountKey]*accountCounters        // accounts with their own label
	labelled map[string]bool                        // their account ids
	overflow map[entitlements.Unit]*accountCounters // the rest, by unit
}

var _ Meter = (*AccountSpend)(nil)

type accountKey struct {
	account string
	unit    entitlements.Unit
}

type accountCounters struct {
	prompt, completion, spend prometheus.Counter
	perUnit                   float64 // spend counter increment per settled unit
}

// AccountSpendOption configures an AccountSpend.
type AccountSpendOption interface {
	applySpend(*spendOptions)
}

type spendOptions struct {
	maxAccounts int
}

type spendOptionFunc func(*spendOptions)

func (f spendOptionFunc) applySpend(o *spendOptions) { f(o) }

// WithMaxAccounts bounds the accounts AccountSpend labels individually
// (>= 0): the first n accounts seen get their own series, later ones are
// counted together under OverflowAccount. Default 0: no bound.
func WithMaxAccounts(n int) AccountSpendOption {
	return spendOptionFunc(func(o *spendOptions) { o.maxAccounts = n })
}

// NewAccountSpend returns an AccountSpend whose counters are registered with
// reg. It returns an error when reg is nil, an option is out of range, or
// registration fails (for example because the counters are already
// registered there); then nothing stays registered.
func NewAccountSpend(reg prometheus.Registerer, opts ...AccountSpendOption) (*AccountSpend, error) {
	var o spendOptions
	for _, opt := range opts {
		opt.applySpend(&o)
	}
	if reg == nil {
		return nil, errors.New("metering: NewAccountSpend needs a Registerer")
	}
	if o.maxAccounts < 0 {
		return nil, errors.New("metering: WithMaxAccounts must be >= 0")
	}
	a := &AccountSpend{
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "helexa_account_tokens_total",
			Help: "Tokens used per account, by kind (prompt or completion).",
		}, []string{"account", "kind"}),
		spend: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "helexa_account_spend_total",
			Help: "Settled spend per account, in tokens or US dollars.",
		}, []string{"account", "unit"}),
		maxAccounts: o.maxAccounts,
		accounts:    make(map[accountKey]*accountCounters),
		labelled:    make(map[string]bool),
		overflow:    make(map[entitlements.Unit]*accountCounters),
	}
	if err := reg.Register(a.tokens); err != nil {
		return nil, err
	}
	if err := reg.Register(a.spend); err != nil {
		reg.Unregister(a.tokens)
		return nil, err
	}
	return a, nil
}

// Record implements Meter.
func (a *AccountSpend) Record(r Record) {
	if r.AccountID == "" {
		return
	}
	c := a.counters(accountKey{r.AccountID, r.Unit})
	if r.PromptTokens > 0 {
		c.prompt.Add(float64(r.PromptTokens))
	}
	if r.CompletionTokens > 0 {
		c.completion.Add(float64(r.CompletionTokens))
	}
	if r.Settled > 0 {
		c.spend.Add(float64(r.Settled) * c.perUnit)
	}
}

// counters returns the counters of k, creating them on first use.
func (a *AccountSpend) counters(k accountKey) *accountCounters {
	a.mu.RLock()
	c := a.lookup(k)
	a.mu.RUnlock()
	if c != nil {
		return c
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if c := a.lookup(k); c != nil {
		return c
	}
	if a.overflows(k.account) {
		c = a.newCounters(OverflowAccount, k.unit)
		a.overflow[k.unit] = c
		return c
	}
	a.labelled[k.account] = true
	c = a.newCounters(k.account, k.unit)
	a.accounts[k] = c
	return c
}

// lookup returns the existing counters of k, or nil. a.mu must be held.
func (a *AccountSpend) lookup(k accountKey) *accountCounters {
	if c := a.accounts[k]; c != nil {
		return c
	}
	if a.overflows(k.account) {
		return a.overflow[k.unit]
	}
	return nil
}

// overflows reports whether account is counted under OverflowAccount.
// a.mu must be held.
func (a *AccountSpend) overflows(account string) bool {
	return a.maxAccounts > 0 && len(a.labelled) >= a.maxAccounts && !a.labelled[account]
}

func (a *AccountSpend) newCounters(label string, unit entitlements.Unit) *accountCounters {
	c := &accountCounters{
		prompt:     a.tokens.WithLabelValues(label, "prompt"),
		completion: a.tokens.WithLabelValues(label, "completion"),
		spend:      a.spend.WithLabelValues(label, unit.String()),
		perUnit:    1,
	}
	if unit == entitlements.UnitMicroUSD {
		c.perUnit = 1e-6 // micro-dollars to dollars
	}
	return c
}
