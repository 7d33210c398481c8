package metering_test

import (
	"errors"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/helexa-ai/helexa-go/cortex/metering"
	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/prometheus/client_golang/prometheus"
)

// gather returns every sample of reg as `name{k="v",...}` -> value.
func gather(t *testing.T, reg prometheus.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, lp := range m.GetLabel() {
				labels = append(labels, lp.GetName()+"="+`"`+lp.GetValue()+`"`)
			}
			sort.Strings(labels)
			key := mf.GetName()
			if len(labels) > 0 {
				key += "{" + strings.Join(labels, ",") + "}"
			}
			v := m.GetCounter().GetValue()
			if m.GetGauge() != nil {
				v = m.GetGauge().GetValue()
			}
			out[key] = v
		}
	}
	return out
}

func TestFileSinkCollector(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "meter.jsonl")
	hook, held, release := holdWriter()
	s := newSink(t, path, hook, metering.WithBuffer(2))
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(s.Collector()); err != nil {
		t.Fatal(err)
	}
	hold := rec(0)
	hold.RequestID = "hold"
	s.Record(hold)
	<-held
	for i := range 5 {
		s.Record(rec(i)) // 2 buffered, 3 dropped
	}
	want := map[string]float64{
		"helexa_meter_records_written_total": 0,
		"helexa_meter_records_dropped_total": 3,
		"helexa_meter_write_errors_total":    0,
		"helexa_meter_buffered_records":      2,
	}
	if diff := cmp.Diff(gather(t, reg), want); diff != "" {
		t.Errorf("while held (-got +want):\n%s", diff)
	}
	close(release)
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	want["helexa_meter_records_written_total"] = 3
	want["helexa_meter_buffered_records"] = 0
	if diff := cmp.Diff(gather(t, reg), want); diff != "" {
		t.Errorf("after Close (-got +want):\n%s", diff)
	}
}

func TestAccountSpend(t *testing.T) {
	t.Parallel()
	usd := entitlements.UnitMicroUSD
	tests := []struct {
		name string
		max  int
		in   []metering.Record
		want map[string]float64
	}{
		{
			name: "tokens and dollars",
			in: []metering.Record{
				{AccountID: "acme", PromptTokens: 10, CompletionTokens: 20, Settled: 30},
				{AccountID: "acme", PromptTokens: 1, CompletionTokens: 2, Settled: 3},
				{AccountID: "globex", PromptTokens: 100, Settled: 2_500_000, Unit: usd},
			},
			want: map[string]float64{
				`helexa_account_tokens_total{account="acme",kind="prompt"}`:       11,
				`helexa_account_tokens_total{account="acme",kind="completion"}`:   22,
				`helexa_account_spend_total{account="acme",unit="tokens"}`:        33,
				`helexa_account_tokens_total{account="globex",kind="prompt"}`:     100,
				`helexa_account_tokens_total{account="globex",kind="completion"}`: 0,
				`helexa_account_spend_total{account="globex",unit="usd"}`:         2.5,
			},
		},
		{
			name: "anonymous and negative ignored",
			in: []metering.Record{
				{PromptTokens: 10, CompletionTokens: 20, Settled: 30},
				{AccountID: "acme", PromptTokens: -1, CompletionTokens: -2, Settled: -3},
			},
			want: map[string]float64{
				`helexa_account_tokens_total{account="acme",kind="prompt"}`:     0,
				`helexa_account_tokens_total{account="acme",kind="completion"}`: 0,
				`helexa_account_spend_total{account="acme",unit="tokens"}`:      0,
			},
		},
		{
			name: "overflow",
			max:  1,
			in: []metering.Record{
				{AccountID: "a", PromptTokens: 1},
				{AccountID: "b", PromptTokens: 2},
				{AccountID: "c", PromptTokens: 3, Settled: 1_000_000, Unit: usd},
				{AccountID: "a", PromptTokens: 4, Settled: 5_000_000, Unit: usd}, // a keeps its label in any unit
			},
			want: map[string]float64{
				`helexa_account_tokens_total{account="a",kind="prompt"}`:          5,
				`helexa_account_tokens_total{account="a",kind="completion"}`:      0,
				`helexa_account_spend_total{account="a",unit="tokens"}`:           0,
				`helexa_account_spend_total{account="a",unit="usd"}`:              5,
				`helexa_account_tokens_total{account="_other",kind="prompt"}`:     5,
				`helexa_account_tokens_total{account="_other",kind="completion"}`: 0,
				`helexa_account_spend_total{account="_other",unit="tokens"}`:      0,
				`helexa_account_spend_total{account="_other",unit="usd"}`:         1,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			reg := prometheus.NewPedanticRegistry()
			a, err := metering.NewAccountSpend(reg, metering.WithMaxAccounts(tt.max))
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range tt.in {
				a.Record(r)
			}
			if diff := cmp.Diff(gather(t, reg), tt.want); diff != "" {
				t.Errorf("samples (-got +want):\n%s", diff)
			}
		})
	}
}

func TestNewAccountSpendErrors(t *testing.T) {
	t.Parallel()
	if _, err := metering.NewAccountSpend(nil); err == nil {
		t.Error("nil Registerer accepted")
	}
	if _, err := metering.NewAccountSpend(prometheus.NewRegistry(), metering.WithMaxAccounts(-1)); err == nil {
		t.Error("negative WithMaxAccounts accepted")
	}

	// The second registration fails: the first is undone.
	reg := &failingRegisterer{failAt: 2, live: map[prometheus.Collector]bool{}}
	if _, err := metering.NewAccountSpend(reg); !errors.Is(err, errRegister) {
		t.Fatalf("NewAccountSpend = %v, want errRegister", err)
	}
	if len(reg.live) != 0 {
		t.Errorf("%d collectors left registered, want 0", len(reg.live))
	}

	// A second AccountSpend on one registry collides with the first.
	r := prometheus.NewRegistry()
	if _, err := metering.NewAccountSpend(r); err != nil {
		t.Fatal(err)
	}
	if _, err := metering.NewAccountSpend(r); err == nil {
		t.Error("second NewAccountSpend on one registry succeeded")
	}
}

var errRegister = errors.New("register failed")

// failingRegisterer is a Registerer whose failAt-th Register fails; live
// holds what is registered.
type failingRegisterer struct {
	failAt, calls int
	live          map[prometheus.Collector]bool
}

func (f *failingRegisterer) Register(c prometheus.Collector) error {
	f.calls++
	if f.calls == f.failAt {
		return errRegister
	}
	f.live[c] = true
	return nil
}

func (f *failingRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := f.Register(c); err != nil {
			panic(err)
		}
	}
}

func (f *failingRegisterer) Unregister(c prometheus.Collector) bool {
	ok := f.live[c]
	delete(f.live, c)
	return ok
}

func TestAccountSpendConcurrent(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	a, err := metering.NewAccountSpend(reg, metering.WithMaxAccounts(3))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	const workers, each = 4, 200
	for w := range workers {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range each {
				a.Record(metering.Record{AccountID: string(rune('a' + (w+i)%6)), PromptTokens: 1})
			}
		}()
	}
	for range workers {
		<-done
	}
	var total float64
	accounts := 0
	for k, v := range gather(t, reg) {
		if strings.Contains(k, `kind="prompt"`) {
			total += v
			accounts++
		}
	}
	if total != workers*each || accounts != 4 {
		t.Errorf("prompt tokens %v over %d series, want %d over 4 (3 accounts + overflow)", total, accounts, workers*each)
	}
}
