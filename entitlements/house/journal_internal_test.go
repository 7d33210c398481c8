package house

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/helexa-ai/helexa-go/entitlements"
)

// TestJournalReplayTornLine: the torn last line of a crash mid-write is
// dropped (no settle in it had returned); a bad line before it is an
// error, not silently skipped spend.
func TestJournalReplayTornLine(t *testing.T) {
	t.Parallel()
	const good = `{"g":"g.1","p":{"account_id":"acme"}}` + "\n" + `{"g":"g.1","s":7}` + "\n"
	left, err := replay([]byte(good + `{"g":"g.1","s":`))
	if err != nil || len(left) != 1 || left["g.1"].spent != 7 {
		t.Fatalf("replay with a torn line = %+v, %v; want g.1 with 7 spent", left, err)
	}
	if _, err := replay([]byte(`{"g":` + "\n" + good)); err == nil {
		t.Fatal("a bad line before the last one replayed without an error")
	}
}

// TestJournalCompaction: past its size limit, a flush rewrites the journal
// as what is left to report; a client started on it after a crash still
// reports every settle.
func TestJournalCompaction(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	l, err := entitlements.NewLocal(entitlements.Config{Keys: []entitlements.KeyConfig{{Key: "sk-acme", AccountID: "acme"}}})
	if err != nil {
		t.Fatal(err)
	}
	h, err := NewHandler(l, WithGateway(Gateway{Name: "gw", TokenSHA256: entitlements.KeyDigest("tok")}))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	p, err := l.Resolve(ctx, "sk-acme")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "j")
	grants := WithGrants(GrantConfig{NoFlusher: true, Journal: path})
	c, err := NewClient(srv.URL, "tok", grants)
	if err != nil {
		t.Fatal(err)
	}
	c.grants.journal.compactAt = 1
	var served entitlements.Amount
	for i := range 40 {
		r, err := c.Reserve(ctx, p, 10)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Settle(ctx, 3); err != nil {
			t.Fatal(err)
		}
		served += 3
		if i%10 == 9 {
			if err := c.Flush(ctx, false); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Crashed after ten more settles: the file holds the compacted grant
	// and those ten only.
	for range 10 {
		r, err := c.Reserve(ctx, p, 10)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Settle(ctx, 3); err != nil {
			t.Fatal(err)
		}
		served += 3
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "\n"); n > 12 {
		t.Fatalf("the journal has %d lines after a compaction, want the grant and 10 settles:\n%s", n, b)
	}
	if s, err := l.Snapshot(ctx, p); err != nil || s.Spent != served-30 {
		t.Fatalf("before the restart: spent %d (%v), want the 30 of the last settles unreported", s.Spent, err)
	}
	restarted, err := NewClient(srv.URL, "tok", grants)
	if err != nil {
		t.Fatal(err)
	}
	if err := restarted.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	s, err := l.Snapshot(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if s.Spent != served {
		t.Fatalf("spent %d, served %d", s.Spent, served)
	}
}
