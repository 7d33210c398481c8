package cortex_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/cortex/cortextest"
	"github.com/helexa-ai/helexa-go/cortex/metering"
	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/neuron"
)

// ledgerState is one in-memory ledger that several ledgerFakes (one per
// gateway, as replicas or restarts over one Redis) share.
type ledgerState struct {
	mu              sync.Mutex
	next            int
	open            map[string]entitlements.Amount // reservation id -> amount
	spent, reserved entitlements.Amount
}

func newLedgerState() *ledgerState {
	return &ledgerState{open: make(map[string]entitlements.Amount)}
}

// ledgerFake is an entitlements.Provider and Resumer over a ledgerState:
// "sk-ACCOUNT" resolves to account ACCOUNT (uncapped); a reservation is an
// id, consumed once. fail, when set, is asked before every Settle and
// Release (n counts them, from 1); a non-nil error fails the call with
// nothing changed. With renewals set its reservations are leases the
// gateway renews (entitlements.Renewers), which count the renewals there.
type ledgerFake struct {
	st       *ledgerState
	fail     func(ctx context.Context, n int64) error
	calls    atomic.Int64  // Settle and Release calls
	renewals *atomic.Int64 // nil: no leases
}

var (
	_ entitlements.Provider = (*ledgerFake)(nil)
	_ entitlements.Resumer  = (*ledgerFake)(nil)
)

// fakeRes is a reservation of a ledgerFake.
type fakeRes struct {
	f      *ledgerFake
	id     string
	p      entitlements.Principal
	amount entitlements.Amount
}

func (r *fakeRes) Principal() entitlements.Principal { return r.p }
func (r *fakeRes) Amount() entitlements.Amount       { return r.amount }

func (r *fakeRes) Settle(ctx context.Context, actual entitlements.Amount) error {
	return r.f.finish(ctx, r, actual)
}

func (r *fakeRes) Release(ctx context.Context) error { return r.f.finish(ctx, r, 0) }

// fakeLease is a fakeRes of a ledgerFake with leases.
type fakeLease struct{ *fakeRes }

func (r fakeLease) Renew(context.Context, time.Duration) error {
	st := r.f.st
	st.mu.Lock()
	_, open := st.open[r.id]
	st.mu.Unlock()
	if !open {
		return entitlements.ErrReservationSettled
	}
	r.f.renewals.Add(1)
	return nil
}

// handle returns the reservation id of amount for p.
func (f *ledgerFake) handle(id string, p entitlements.Principal, amount entitlements.Amount) entitlements.Reservation {
	r := &fakeRes{f: f, id: id, p: p, amount: amount}
	if f.renewals != nil {
		return fakeLease{r}
	}
	return r
}

// res returns r as a reservation of a ledgerFake.
func res(r entitlements.Reservation) (*fakeRes, bool) {
	switch r := r.(type) {
	case *fakeRes:
		return r, true
	case fakeLease:
		return r.fakeRes, true
	}
	return nil, false
}

func (f *ledgerFake) Resolve(_ context.Context, key string) (entitlements.Principal, error) {
	if len(key) <= 3 || key[:3] != "sk-" {
		return entitlements.Principal{}, entitlements.ErrInvalidKey
	}
	return entitlements.Principal{AccountID: key[3:], KeyID: key[3:]}, nil
}

func (f *ledgerFake) Reserve(_ context.Context, p entitlements.Principal, amount entitlements.Amount) (entitlements.Reservation, error) {
	f.st.mu.Lock()
	defer f.st.mu.Unlock()
	f.st.next++
	id := "r" + strconv.Itoa(f.st.next)
	f.st.open[id] = amount
	f.st.reserved += amount
	return f.handle(id, p, amount), nil
}

func (f *ledgerFake) finish(ctx context.Context, fr *fakeRes, actual entitlements.Amount) error {
	n := f.calls.Add(1)
	if f.fail != nil {
		if err := f.fail(ctx, n); err != nil {
			return err
		}
	}
	f.st.mu.Lock()
	defer f.st.mu.Unlock()
	amt, ok := f.st.open[fr.id]
	if !ok {
		return entitlements.ErrReservationSettled
	}
	delete(f.st.open, fr.id)
	f.st.reserved -= amt
	f.st.spent += actual
	return nil
}

func (f *ledgerFake) Snapshot(context.Context, entitlements.Principal) (entitlements.BudgetSnapshot, error) {
	f.st.mu.Lock()
	defer f.st.mu.Unlock()
	return entitlements.BudgetSnapshot{Spent: f.st.spent, Reserved: f.st.reserved}, nil
}

func (f *ledgerFake) ReservationToken(r entitlements.Reservation) (string, bool) {
	fr, ok := res(r)
	if !ok {
		return "", false
	}
	return fr.id + ":" + strconv.FormatInt(int64(fr.amount), 10), true
}

func (f *ledgerFake) ResumeReservation(p entitlements.Principal, token string) (entitlements.Reservation, error) {
	for i := range len(token) {
		if token[i] == ':' {
			n, err := strconv.ParseInt(token[i+1:], 10, 64)
			if err != nil {
				break
			}
			return f.handle(token[:i], p, entitlements.Amount(n)), nil
		}
	}
	return nil, entitlements.ErrUnknownReservation
}

// spent returns the ledger's spend and what it holds reserved.
func (st *ledgerState) budget() (spent, reserved entitlements.Amount) {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.spent, st.reserved
}

// unavailable is the error of a ledger that cannot be reached.
var unavailable = &entitlements.UnavailableError{Err: errors.New("connection refused")}

// failFirst fails the first n calls as unreachable.
func failFirst(n int64) func(context.Context, int64) error {
	return func(_ context.Context, call int64) error {
		if call <= n {
			return unavailable
		}
		return nil
	}
}

// settleRecords returns the settle records among recs.
func settleRecords(recs []metering.Record) []metering.Record {
	var out []metering.Record
	for _, r := range recs {
		if r.Kind == metering.KindSettle {
			out = append(out, r)
		}
	}
	return out
}

// fastRetries makes settle retries quick for tests.
var fastRetries = cortex.WithSettleBackoff(time.Millisecond, 5*time.Millisecond)

// ignoreVolatile ignores the record fields a test cannot predict.
var ignoreVolatile = cmpopts.IgnoreFields(metering.Record{}, "Time", "Duration", "TTFT", "SettleID")

// A settle that fails is retried in the background until it lands: the
// request is answered at once, its record says pending with nothing
// settled, and a settle record follows with what the ledger recorded; the
// ledger ends with the usage spent and nothing reserved.
func TestSettleRetriedUntilItLands(t *testing.T) {
	t.Parallel()
	st := newLedgerState()
	p := &ledgerFake{st: st, fail: failFirst(3)}
	rec := new(recorder)
	clock := newFakeClock()
	s := newStack(t, []cortextest.Spec{loadedA("n1")}, testCatalogue(t),
		cortex.WithProvider(p), cortex.WithMeter(rec), cortex.WithClock(clock))

	status, _, body := s.post("/v1/chat/completions", chatBody("chat-a", `"max_tokens":5`), "x-api-key", "sk-acct")
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	prompt, completion := usageOf(t, body)
	used := entitlements.Amount(prompt + completion)
	waitFor(t, "the request's record", func() bool { return len(rec.records()) == 1 })
	// Each attempt waits for its backoff timer: the first attempt failed
	// with the request, two retries fail, the third lands.
	for n := int64(2); n <= 4; n++ {
		waitArmed(t, clock, 1)
		clock.Advance(cortex.DefaultSettleMaxBackoff)
		waitFor(t, "the next attempt", func() bool { return p.calls.Load() >= n })
	}
	waitFor(t, "the settle record", func() bool { return len(settleRecords(rec.records())) == 1 })

	recs := rec.records()
	if len(recs) != 2 {
		t.Fatalf("%d records, want the request's and its settle's: %+v", len(recs), recs)
	}
	if recs[0].SettleID == "" || recs[0].SettleID != recs[1].SettleID {
		t.Errorf("settle ids %q and %q: want one id, set", recs[0].SettleID, recs[1].SettleID)
	}
	if recs[0].RequestID == "" || recs[0].RequestID != recs[1].RequestID {
		t.Errorf("request ids %q and %q: want the request's, in both", recs[0].RequestID, recs[1].RequestID)
	}
	base := metering.Record{AccountID: "acct", KeyID: "acct", Model: "chat-a", Neuron: "n1", Route: "chat.completions",
		Reserved: helloEstimate + 5, Status: 200, Outcome: metering.OutcomeOK, RequestID: recs[0].RequestID}
	req := base
	req.PromptTokens, req.CompletionTokens, req.UsageSource, req.SettleState = prompt, completion, metering.UsageEngine, metering.SettlePending
	late := base
	late.Kind, late.SettleState, late.Settled = metering.KindSettle, metering.SettleSettled, used
	if diff := cmp.Diff(recs, []metering.Record{req, late}, ignoreVolatile); diff != "" {
		t.Errorf("records (-got +want):\n%s", diff)
	}
	if spent, reserved := st.budget(); spent != used || reserved != 0 {
		t.Errorf("ledger: spent %d, reserved %d; want %d, 0", spent, reserved, used)
	}
	if n := p.calls.Load(); n != 4 {
		t.Errorf("%d Settle calls, want 4 (3 failed)", n)
	}
}

// Answers that mean the reservation is gone end the retries at once: the
// record says failed, nothing is settled and no settle record follows.
func TestSettleFinalErrors(t *testing.T) {
	t.Parallel()
	for _, final := range []error{entitlements.ErrUnknownReservation, entitlements.ErrReservationSettled, entitlements.ErrInvalidAmount} {
		t.Run(final.Error(), func(t *testing.T) {
			t.Parallel()
			p := &ledgerFake{st: newLedgerState(), fail: func(context.Context, int64) error { return final }}
			rec := new(recorder)
			s := newStack(t, []cortextest.Spec{loadedA("n1")}, testCatalogue(t),
				cortex.WithProvider(p), cortex.WithMeter(rec), fastRetries)
			if status, _, body := s.post("/v1/chat/completions", chatBody("chat-a", `"max_tokens":2`), "x-api-key", "sk-acct"); status != http.StatusOK {
				t.Fatalf("status %d: %s", status, body)
			}
			waitFor(t, "the request to finish", func() bool { return s.gw.InFlight() == 0 })
			got := rec.last(t)
			if got.SettleState != metering.SettleFailed || got.Settled != 0 || got.SettleID != "" {
				t.Errorf("record: settle state %q, settled %d, id %q; want failed, 0, none", got.SettleState, got.Settled, got.SettleID)
			}
			shutdown(t, s.gw)
			if n := p.calls.Load(); n != 1 {
				t.Errorf("%d Settle calls, want 1", n)
			}
			if n := len(rec.records()); n != 1 {
				t.Errorf("%d records, want 1", n)
			}
		})
	}
}

// shutdown shuts gw down, waiting for its pending settles.
func shutdown(t *testing.T, gw *cortex.Gateway) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // t.Context ends before the cleanups
	defer cancel()
	if err := gw.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

// stopNow shuts gw down without waiting for its pending settles.
func stopNow(gw *cortex.Gateway) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = gw.Shutdown(ctx)
}

// A settle whose retry window ends is given up: a settle record says
// failed, and nothing is spent.
func TestSettleRetryWindow(t *testing.T) {
	t.Parallel()
	st := newLedgerState()
	p := &ledgerFake{st: st, fail: func(context.Context, int64) error { return unavailable }}
	rec := new(recorder)
	s := newStack(t, []cortextest.Spec{loadedA("n1")}, testCatalogue(t),
		cortex.WithProvider(p), cortex.WithMeter(rec), fastRetries, cortex.WithSettleRetryWindow(time.Nanosecond))
	if status, _, body := s.post("/v1/chat/completions", chatBody("chat-a", `"max_tokens":2`), "x-api-key", "sk-acct"); status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	waitFor(t, "the settle record", func() bool { return len(settleRecords(rec.records())) == 1 })
	got := settleRecords(rec.records())[0]
	if got.SettleState != metering.SettleFailed || got.Settled != 0 {
		t.Errorf("settle record: state %q, settled %d; want failed, 0", got.SettleState, got.Settled)
	}
	if spent, _ := st.budget(); spent != 0 {
		t.Errorf("spent %d, want 0", spent)
	}
}

// Without an outbox, a settle still pending when the gateway stops is
// lost, and its settle record says so.
func TestSettleLostWithoutOutbox(t *testing.T) {
	t.Parallel()
	p := &ledgerFake{st: newLedgerState(), fail: func(context.Context, int64) error { return unavailable }}
	rec := new(recorder)
	s := newStack(t, []cortextest.Spec{loadedA("n1")}, testCatalogue(t),
		cortex.WithProvider(p), cortex.WithMeter(rec), fastRetries)
	if status, _, body := s.post("/v1/chat/completions", chatBody("chat-a", `"max_tokens":2`), "x-api-key", "sk-acct"); status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	waitFor(t, "a retry", func() bool { return p.calls.Load() >= 2 })
	stopNow(s.gw)
	late := settleRecords(rec.records())
	if len(late) != 1 || late[0].SettleState != metering.SettleFailed {
		t.Errorf("settle records %+v: want one, failed", late)
	}
}

// A settle still pending when the gateway stops stays in the outbox, and
// the next gateway over it re-issues it: the ledger records the spend once,
// and the new gateway's meter gets the settle record.
func TestSettleOutboxReplayAfterShutdown(t *testing.T) {
	t.Parallel()
	st := newLedgerState()
	outbox := filepath.Join(t.TempDir(), "settles.jsonl")

	down := &ledgerFake{st: st, fail: func(context.Context, int64) error { return unavailable }}
	rec1 := new(recorder)
	s1 := newStack(t, []cortextest.Spec{loadedA("n1")}, testCatalogue(t),
		cortex.WithProvider(down), cortex.WithMeter(rec1), fastRetries, cortex.WithSettleOutbox(outbox))
	status, _, body := s1.post("/v1/chat/completions", chatBody("chat-a", `"max_tokens":3`), "x-api-key", "sk-acct")
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	prompt, completion := usageOf(t, body)
	used := entitlements.Amount(prompt + completion)
	waitFor(t, "a retry", func() bool { return down.calls.Load() >= 2 })
	stopNow(s1.gw)
	if got := rec1.last(t).SettleState; got != metering.SettlePending {
		t.Errorf("request record: settle state %q, want pending", got)
	}
	if late := settleRecords(rec1.records()); len(late) != 0 {
		t.Errorf("the stopped gateway wrote settle records %+v; want none (the settle is in the outbox)", late)
	}
	pendingID := rec1.last(t).SettleID
	if spent, reserved := st.budget(); spent != 0 || reserved != helloEstimate+3 {
		t.Fatalf("ledger while down: spent %d, reserved %d; want 0, %d", spent, reserved, helloEstimate+3)
	}

	up := &ledgerFake{st: st}
	rec2 := new(recorder)
	newStack(t, []cortextest.Spec{loadedA("n1")}, testCatalogue(t),
		cortex.WithProvider(up), cortex.WithMeter(rec2), fastRetries, cortex.WithSettleOutbox(outbox))
	waitFor(t, "the replayed settle", func() bool { return len(rec2.records()) == 1 })
	want := metering.Record{AccountID: "acct", KeyID: "acct", Model: "chat-a", Neuron: "n1", Route: "chat.completions",
		Reserved: helloEstimate + 3, Settled: used, Status: 200, Outcome: metering.OutcomeOK,
		Kind: metering.KindSettle, SettleState: metering.SettleSettled, SettleID: pendingID}
	if diff := cmp.Diff(rec2.records(), []metering.Record{want}, cmpopts.IgnoreFields(metering.Record{}, "Time")); diff != "" {
		t.Errorf("records of the new gateway (-got +want):\n%s", diff)
	}
	if spent, reserved := st.budget(); spent != used || reserved != 0 {
		t.Errorf("ledger: spent %d, reserved %d; want %d, 0", spent, reserved, used)
	}
}

// After a crash the outbox holds the settle lines of settles whose first
// attempt never ended, maybe a line cut short: a new gateway re-issues
// them, skipping the broken line; those that had landed (done) are not
// re-issued, and one whose reservation is already consumed counts as
// landed.
func TestSettleOutboxReplayAfterCrash(t *testing.T) {
	t.Parallel()
	st := newLedgerState()
	f := &ledgerFake{st: st}
	p := entitlements.Principal{AccountID: "acct", KeyID: "acct"}
	var toks []string
	for range 3 {
		r, err := f.Reserve(t.Context(), p, 50)
		if err != nil {
			t.Fatal(err)
		}
		tok, _ := f.ReservationToken(r)
		toks = append(toks, tok)
	}
	// The third was settled by the crashed process, whose done line was
	// lost.
	third, _ := f.ResumeReservation(p, toks[2])
	if err := third.Settle(t.Context(), 20); err != nil {
		t.Fatal(err)
	}
	outbox := filepath.Join(t.TempDir(), "settles.jsonl")
	lines := `{"op":"settle","id":"a","time":"2026-01-01T00:00:00Z","token":"` + toks[0] + `","amount":30,"account_id":"acct","key_id":"acct","unit":"tokens","reserved":50,"model":"chat-a","route":"chat.completions","status":200,"outcome":"ok"}
{"op":"settle","id":"b","time":"2026-01-01T00:00:00Z","token":"` + toks[1] + `","release":true,"account_id":"acct","key_id":"acct","reserved":50}
{"op":"settle","id":"c","token":"` + toks[2] + `","amount":20,"account_id":"acct","key_id":"acct","reserved":50}
{"op":"settle","id":"d","token":"zz:1","amount":1,"account_id":"acct"}
{"op":"done","id":"d","state":"settled"}
{"op":"settle","id":"e","tok`
	if err := os.WriteFile(outbox, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	rec := new(recorder)
	s := newStack(t, []cortextest.Spec{loadedA("n1")}, testCatalogue(t),
		cortex.WithProvider(&ledgerFake{st: st}), cortex.WithMeter(rec), fastRetries, cortex.WithSettleOutbox(outbox))
	waitFor(t, "the replayed settles", func() bool { return len(rec.records()) == 3 })
	shutdown(t, s.gw)

	got := map[string]metering.Record{}
	for _, r := range rec.records() {
		got[r.SettleID] = r
	}
	settle := metering.Record{Kind: metering.KindSettle, AccountID: "acct", KeyID: "acct", Reserved: 50}
	a, b, c := settle, settle, settle
	a.SettleID, a.SettleState, a.Settled = "a", metering.SettleSettled, 30
	a.Model, a.Route, a.Status, a.Outcome = "chat-a", "chat.completions", 200, metering.OutcomeOK
	b.SettleID, b.SettleState = "b", metering.SettleReleased
	c.SettleID, c.SettleState, c.Settled = "c", metering.SettleSettled, 20
	want := map[string]metering.Record{"a": a, "b": b, "c": c}
	if diff := cmp.Diff(got, want, cmpopts.IgnoreFields(metering.Record{}, "Time")); diff != "" {
		t.Errorf("settle records (-got +want):\n%s", diff)
	}
	if spent, reserved := st.budget(); spent != 50 || reserved != 0 {
		t.Errorf("ledger: spent %d, reserved %d; want 50, 0", spent, reserved)
	}
	data, err := os.ReadFile(outbox)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) != 0 {
		t.Errorf("the outbox after a clean shutdown holds:\n%s\nwant nothing", data)
	}
}

// settle_outbox is resolved against the directory of cortex.toml, and the
// gateway it configures keeps its settles there; settle_retry_window may
// not be negative.
func TestSettleConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "cortex.toml")
	doc := "[gateway]\nsettle_outbox = \"settles.jsonl\"\nsettle_retry_window = \"1h\"\n" +
		"[[neurons]]\nname = \"n1\"\nendpoint = \"http://127.0.0.1:1\"\n"
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := cortex.LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "settles.jsonl"); c.Gateway.SettleOutbox != want || c.Gateway.SettleRetryWindow.Std() != time.Hour {
		t.Errorf("settle_outbox %q, settle_retry_window %v; want %q, 1h", c.Gateway.SettleOutbox, c.Gateway.SettleRetryWindow.Std(), want)
	}
	gw, err := cortex.NewGateway(c.Neurons, nil, append(c.GatewayOptions(), cortex.WithProvider(&ledgerFake{st: newLedgerState()}))...)
	if err != nil {
		t.Fatal(err)
	}
	shutdown(t, gw)
	if _, err := os.Stat(c.Gateway.SettleOutbox); err != nil {
		t.Errorf("the gateway made no outbox: %v", err)
	}

	_, err = cortex.ParseConfig([]byte("[gateway]\nsettle_retry_window = \"-1s\"\n[[neurons]]\nname = \"n1\"\nendpoint = \"http://127.0.0.1:1\"\n"))
	var ce *cortex.ConfigError
	if !errors.As(err, &ce) || ce.Line != 2 {
		t.Errorf("negative settle_retry_window: %v; want a ConfigError at line 2", err)
	}
	c.Gateway.SettleRetryWindow = -1
	if err := c.Validate(); !errors.As(err, &ce) || ce.Entry != "gateway" {
		t.Errorf("Validate(negative settle_retry_window) = %v; want a ConfigError of entry gateway", err)
	}
}

// While a settle is pending its lease is still renewed, so that the ledger
// keeps the amount held until the settle lands.
func TestPendingSettleKeepsItsLease(t *testing.T) {
	t.Parallel()
	st := newLedgerState()
	p := &ledgerFake{st: st, renewals: new(atomic.Int64)}
	var mark atomic.Int64 // the renewals when the request ended
	p.fail = func(_ context.Context, n int64) error {
		if n == 1 {
			mark.Store(p.renewals.Load())
		}
		// Fail until the lease has been renewed twice since.
		if p.renewals.Load() < mark.Load()+2 {
			return unavailable
		}
		return nil
	}
	rec := new(recorder)
	s := newStack(t, []cortextest.Spec{loadedA("n1")}, testCatalogue(t), cortex.WithProvider(p), cortex.WithMeter(rec),
		cortex.WithSettleBackoff(time.Millisecond, 2*time.Millisecond), cortex.WithLeaseTTL(15*time.Millisecond))
	if status, _, body := s.post("/v1/chat/completions", chatBody("chat-a", `"max_tokens":2`), "x-api-key", "sk-acct"); status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	waitFor(t, "the settle record", func() bool { return len(settleRecords(rec.records())) == 1 })
	if got := settleRecords(rec.records())[0].SettleState; got != metering.SettleSettled {
		t.Errorf("settle record: state %q, want settled", got)
	}
	if spent, reserved := st.budget(); spent != helloEstimate+2 || reserved != 0 {
		t.Errorf("ledger: spent %d, reserved %d; want %d, 0", spent, reserved, helloEstimate+2)
	}
}

// A request the gateway is interrupted while serving (a crash, a kill) is
// settled at its whole reservation by the next gateway on the outbox: the
// outbox holds its reservation from the moment it was made.
func TestInterruptedRequestIsSettledAtItsReservation(t *testing.T) {
	t.Parallel()
	st := newLedgerState()
	outbox := filepath.Join(t.TempDir(), "settles.jsonl")
	engine := newStepEngine(3)
	s := newStack(t, []cortextest.Spec{{Name: "n1", Engine: engine, Models: []neuron.LoadSpec{loadedSpec("chat-a", 4000)}}},
		testCatalogue(t), cortex.WithProvider(&ledgerFake{st: st}), fastRetries, cortex.WithSettleOutbox(outbox))
	resp := s.do(http.MethodPost, "/v1/chat/completions", chatBody("chat-a", `"stream":true`, `"max_tokens":20`), "x-api-key", "sk-acct")
	defer resp.Body.Close()
	nextWithin(t, newEventReader(resp.Body), 10*time.Second, "first chunk")

	// What a crash now would leave: the outbox file and the ledger with
	// the reservation open.
	crashed, err := os.ReadFile(outbox)
	if err != nil {
		t.Fatal(err)
	}
	after := newLedgerState()
	st.mu.Lock()
	for id, amt := range st.open {
		after.open[id] = amt
	}
	after.next, after.spent, after.reserved = st.next, st.spent, st.reserved
	st.mu.Unlock()
	if after.reserved != helloEstimate+20 {
		t.Fatalf("reserved %d mid-request, want %d", after.reserved, helloEstimate+20)
	}
	restarted := filepath.Join(t.TempDir(), "settles.jsonl")
	if err := os.WriteFile(restarted, crashed, 0o600); err != nil {
		t.Fatal(err)
	}

	rec := new(recorder)
	s2 := newStack(t, []cortextest.Spec{loadedA("n1")}, testCatalogue(t),
		cortex.WithProvider(&ledgerFake{st: after}), cortex.WithMeter(rec), fastRetries, cortex.WithSettleOutbox(restarted))
	waitFor(t, "the interrupted request's settle", func() bool { return len(rec.records()) == 1 })
	shutdown(t, s2.gw)
	r := rec.records()[0]
	if r.Kind != metering.KindSettle || r.Outcome != metering.OutcomeInterrupted || r.SettleState != metering.SettleSettled ||
		r.Settled != helloEstimate+20 {
		t.Errorf("settle record %+v, want the interrupted request settled at its reservation %d", r, helloEstimate+20)
	}
	if spent, reserved := after.budget(); spent != helloEstimate+20 || reserved != 0 {
		t.Errorf("ledger after the replay: spent %d, reserved %d; want %d, 0", spent, reserved, helloEstimate+20)
	}
}
