package redisledger_test

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/entitlements/redisledger"
)

// A reservation resumed from its token by another Ledger (a restarted
// gateway) settles it exactly once: the spend is recorded, the amount is
// no longer reserved, and the original handle then finds it settled.
func TestResumeReservation(t *testing.T) {
	t.Parallel()
	srv := sharedRedis(t)
	prefix := uniquePrefix(t)
	first := newLedger(t, newClient(t, srv.addr), redisledger.WithKeyPrefix(prefix))
	p := addKey(t, first, "sk-resume", entitlements.Principal{AccountID: "acct", KeyID: "k"},
		entitlements.Budget{HardCap: entitlements.Cap(1000)})
	res, err := first.Reserve(t.Context(), p, 100)
	if err != nil {
		t.Fatalf("Reserve: %v", err)
	}
	tok, ok := first.ReservationToken(res)
	if !ok {
		t.Fatal("ReservationToken: no token for a recorded lease")
	}

	// Another process: a new Ledger over a new client.
	second := newLedger(t, newClient(t, srv.addr), redisledger.WithKeyPrefix(prefix))
	again, err := second.ResumeReservation(p, tok)
	if err != nil {
		t.Fatalf("ResumeReservation(%q): %v", tok, err)
	}
	if again.Amount() != 100 || again.Principal() != p {
		t.Errorf("resumed reservation: amount %d, principal %+v; want 100, %+v", again.Amount(), again.Principal(), p)
	}
	if err := again.(entitlements.Renewer).Renew(t.Context(), 0); err != nil {
		t.Errorf("Renew(resumed): %v", err)
	}
	if err := again.Settle(t.Context(), 70); err != nil {
		t.Fatalf("Settle(resumed): %v", err)
	}
	if err := res.Settle(t.Context(), 70); !errors.Is(err, entitlements.ErrReservationSettled) {
		t.Errorf("Settle(original) after the resumed one: %v, want ErrReservationSettled", err)
	}
	if err := again.Settle(t.Context(), 70); !errors.Is(err, entitlements.ErrReservationSettled) {
		t.Errorf("Settle(resumed) twice: %v, want ErrReservationSettled", err)
	}
	snap, err := second.Snapshot(t.Context(), p)
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	if snap.Spent != 70 || snap.Reserved != 0 {
		t.Errorf("after the resumed settle: spent %d, reserved %d; want 70, 0", snap.Spent, snap.Reserved)
	}
}

// Tokens that name no lease are refused, and handles of another ledger
// have no token.
func TestResumeReservationBadTokens(t *testing.T) {
	t.Parallel()
	srv := sharedRedis(t)
	l := newLedger(t, newClient(t, srv.addr))
	other := newLedger(t, newClient(t, srv.addr))
	p := entitlements.Principal{AccountID: "acct", KeyID: "k"}
	var bad []string
	for _, tok := range []string{"", "abc", ":5", "abc:", "abc:-1", "abc:x", "a:b:5", "abc:9007199254740992", "a b:5"} {
		if _, err := l.ResumeReservation(p, tok); !errors.Is(err, entitlements.ErrUnknownReservation) {
			bad = append(bad, tok)
		}
	}
	if diff := cmp.Diff(bad, []string(nil)); diff != "" {
		t.Errorf("tokens accepted (-got +want):\n%s", diff)
	}
	if _, err := l.ResumeReservation(entitlements.Anonymous(), "abc:5"); !errors.Is(err, entitlements.ErrUnknownReservation) {
		t.Errorf("ResumeReservation(anonymous): %v, want ErrUnknownReservation", err)
	}
	r, err := other.ResumeReservation(p, "abc:5")
	if err != nil {
		t.Fatal(err)
	}
	if tok, ok := l.ReservationToken(r); ok {
		t.Errorf("ReservationToken(another ledger's handle) = %q, true; want false", tok)
	}
}
