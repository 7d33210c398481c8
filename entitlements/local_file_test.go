package entitlements_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/entitlements/entitlementstest"
)

// openFile opens a durable Local at path with cfg's keys, closed at the
// end of the test.
func openFile(t testing.TB, path string, cfg entitlements.Config, opts ...entitlements.Option) *entitlements.Local {
	t.Helper()
	cfg.Local = &entitlements.LocalConfig{Path: path}
	l, err := entitlements.OpenLocal(cfg, opts...)
	if err != nil {
		t.Fatalf("OpenLocal: %v", err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

func TestLocalFileConformance(t *testing.T) {
	t.Parallel()
	entitlementstest.Run(t, func(t *testing.T, clock *entitlementstest.Clock, keys []entitlementstest.KeySpec) entitlements.Provider {
		l := openFile(t, filepath.Join(t.TempDir(), "ledger"), entitlements.Config{}, entitlements.WithClock(clock))
		for _, k := range keys {
			if err := l.AddKey(entitlements.Key{Digest: entitlements.KeyDigest(k.Secret), Principal: k.Principal, Budget: k.Budget}); err != nil {
				t.Fatalf("AddKey(%+v): %v", k.Principal, err)
			}
		}
		return l
	}, entitlementstest.Budgets)
}

// spend reserves and settles amount for p.
func spend(t testing.TB, l *entitlements.Local, p entitlements.Principal, amount entitlements.Amount) {
	t.Helper()
	r, err := l.Reserve(t.Context(), p, amount)
	if err != nil {
		t.Fatalf("Reserve(%s, %d): %v", p.AccountID, amount, err)
	}
	if err := r.Settle(t.Context(), amount); err != nil {
		t.Fatalf("Settle: %v", err)
	}
}

func restartConfig() entitlements.Config {
	return entitlements.Config{Keys: []entitlements.KeyConfig{
		{Key: "sk-bal", AccountID: "bal", HardCap: new(int64(1000))},
		{Key: "sk-roll", AccountID: "roll", HardCap: new(int64(500)), Window: entitlements.WindowConfig{Kind: "rolling", Seconds: 3600}},
		{Key: "sk-usd", AccountID: "usd", Unit: "usd", HardCapUSD: new(2.5)},
		{Key: "sk-free", AccountID: "free"},
	}}
}

// Spend, top-ups, caps, new and revoked keys survive a restart; a rolling
// window's spend lasts until its window ends; reservations in flight do
// not survive.
func TestLocalRestart(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "ledger")
	clock := entitlementstest.NewClock(time.Date(2026, 3, 1, 10, 15, 0, 0, time.UTC))
	ctx := t.Context()
	cfg := restartConfig()
	l := openFile(t, path, cfg, entitlements.WithClock(clock))
	pr := func(id string) entitlements.Principal {
		p, _ := l.Resolve(ctx, "sk-"+id)
		return p
	}
	spend(t, l, pr("bal"), 300)
	spend(t, l, pr("bal"), 5)
	spend(t, l, pr("roll"), 200)
	spend(t, l, pr("usd"), 1_000_000)
	spend(t, l, pr("free"), 7)
	if _, err := l.Reserve(ctx, pr("bal"), 100); err != nil { // in flight at the restart
		t.Fatal(err)
	}
	if _, err := l.TopUp(ctx, "bal", 50); err != nil {
		t.Fatal(err)
	}
	if _, err := l.SetCap(ctx, "usd", entitlements.Cap(3_000_000)); err != nil {
		t.Fatal(err)
	}
	secret, created, err := l.CreateKey(ctx, entitlements.NewKey{Principal: entitlements.Principal{AccountID: "bal", KeyID: "ci"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.RevokeKey(ctx, entitlements.KeyDigest("sk-free")); err != nil {
		t.Fatal(err)
	}
	want := map[string]entitlements.Account{}
	for _, id := range []string{"bal", "roll", "usd", "free"} {
		a, err := l.Account(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		a.Budget.Reserved = 0 // a restart releases what was in flight
		want[id] = a
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	l2 := openFile(t, path, cfg, entitlements.WithClock(clock))
	for id, w := range want {
		got, err := l2.Account(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(got, w); diff != "" {
			t.Errorf("account %s after a restart (-got +want):\n%s", id, diff)
		}
	}
	if _, err := l2.Resolve(ctx, "sk-free"); !errors.Is(err, entitlements.ErrInvalidKey) {
		t.Errorf("revoked key after a restart: Resolve = %v, want ErrInvalidKey", err)
	}
	if p, err := l2.Resolve(ctx, secret); err != nil || p != created.Principal {
		t.Errorf("created key after a restart: Resolve = %+v, %v; want %+v", p, err, created.Principal)
	}
	// The balance came back neither by the restart nor by the
	// configuration: 1050 - 305 remain.
	if _, err := l2.Reserve(ctx, pr("bal"), 746); err == nil {
		t.Errorf("Reserve(746) of a balance with 745 left succeeded")
	}
	if err := l2.Close(); err != nil {
		t.Fatal(err)
	}

	// The rolling window ends at 11:00: its spend is forgotten then.
	clock.Advance(45 * time.Minute)
	l3 := openFile(t, path, cfg, entitlements.WithClock(clock))
	s, err := l3.Snapshot(ctx, pr("roll"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Spent != 0 {
		t.Errorf("rolling spend after its window: %d, want 0", s.Spent)
	}
	if s, _ := l3.Snapshot(ctx, pr("bal")); s.Spent != 305 {
		t.Errorf("balance spend: %d, want 305", s.Spent)
	}
}

// The file is the source of truth once it holds an account: a
// configuration with another cap does not change it.
func TestLocalFileWinsOverConfig(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "ledger")
	l := openFile(t, path, restartConfig())
	if _, err := l.SetCap(t.Context(), "bal", entitlements.Cap(10)); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l2 := openFile(t, path, restartConfig()) // hard_cap = 1000
	a, err := l2.Account(t.Context(), "bal")
	if err != nil {
		t.Fatal(err)
	}
	if a.Budget.HardCap == nil || *a.Budget.HardCap != 10 {
		t.Errorf("cap after a restart with the configuration's 1000: %v, want 10", a.Budget.HardCap)
	}
}

// crashImage returns a copy of the ledger file at path as it is on disk
// now, while its Local is still open: what a crash leaves.
func crashImage(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "ledger")
	if err := os.WriteFile(img, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return img
}

// A Local abandoned without Close keeps what was synced; a torn last
// record (a crash in the middle of a write) is dropped, not fatal.
func TestLocalCrashTornTail(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "ledger")
	cfg := restartConfig()
	l := openFile(t, path, cfg)
	p, _ := l.Resolve(t.Context(), "sk-free")
	for range 100 {
		spend(t, l, p, 3)
	}
	if err := l.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	good := crashImage(t, path)
	// The image of a crash in the middle of the next write: the start of
	// one more spend record of the same account.
	spend(t, l, p, 1000)
	if err := l.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	full, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	goodData, _ := os.ReadFile(good)
	tests := []struct {
		name string
		tail []byte
	}{
		{"clean", nil},
		{"torn length", full[len(goodData) : len(goodData)+3]},
		{"torn payload", full[len(goodData) : len(full)-2]},
		{"bad checksum", append(append([]byte{}, full[len(goodData):len(full)-1]...), full[len(full)-1]^0xff)},
		{"zeros", make([]byte, 64)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "ledger")
			if err := os.WriteFile(img, append(append([]byte{}, goodData...), tt.tail...), 0o600); err != nil {
				t.Fatal(err)
			}
			l2 := openFile(t, img, cfg)
			if s, err := l2.Snapshot(t.Context(), p); err != nil || s.Spent != 300 {
				t.Errorf("recovered spend %d (%v), want the 300 synced", s.Spent, err)
			}
			// The torn bytes are gone: what is written next replays.
			spend(t, l2, p, 1)
			if err := l2.Close(); err != nil {
				t.Fatal(err)
			}
			l3 := openFile(t, img, cfg)
			if s, _ := l3.Snapshot(t.Context(), p); s.Spent != 301 {
				t.Errorf("after a write past the dropped tail: spend %d, want 301", s.Spent)
			}
		})
	}
}

// A bad record followed by good ones, or a file that is not a ledger, is
// refused, not silently cut.
func TestLocalFileCorrupt(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "ledger")
	l := openFile(t, path, restartConfig())
	p, _ := l.Resolve(t.Context(), "sk-free")
	spend(t, l, p, 5)
	spend(t, l, p, 6)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	mid := append([]byte{}, data...)
	mid[len("HLXLDG1\n")+10] ^= 0xff // inside the first record
	tests := []struct {
		name string
		data []byte
	}{
		{"bad record in the middle", mid},
		{"not a ledger", []byte("[entitlements]\nrequire_auth = true\n")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "ledger")
			if err := os.WriteFile(img, tt.data, 0o600); err != nil {
				t.Fatal(err)
			}
			l, err := entitlements.OpenLocal(entitlements.Config{Local: &entitlements.LocalConfig{Path: img}})
			if !errors.Is(err, entitlements.ErrLedgerCorrupt) {
				if l != nil {
					_ = l.Close()
				}
				t.Fatalf("OpenLocal = %v, want ErrLedgerCorrupt", err)
			}
		})
	}
}

// One process at a time: a second open fails while the first holds the
// file, and succeeds once it is closed.
func TestLocalFileLocked(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "ledger")
	l := openFile(t, path, entitlements.Config{})
	cfg := entitlements.Config{Local: &entitlements.LocalConfig{Path: path}}
	if l2, err := entitlements.OpenLocal(cfg); !errors.Is(err, entitlements.ErrLedgerLocked) {
		if l2 != nil {
			_ = l2.Close()
		}
		t.Fatalf("second OpenLocal = %v, want ErrLedgerLocked", err)
	} else if !strings.Contains(err.Error(), strconv.Itoa(os.Getpid())) {
		t.Errorf("error %q does not name the holder's pid %d", err, os.Getpid())
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l2, err := entitlements.OpenLocal(cfg)
	if err != nil {
		t.Fatalf("OpenLocal after Close: %v", err)
	}
	if err := l2.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Reserve(t.Context(), entitlements.Principal{AccountID: "x"}, 1); err == nil {
		t.Errorf("Reserve after Close succeeded")
	}
}

// A file that outgrows its last compaction is rewritten as a snapshot of
// the state, which replays to the same budgets.
func TestLocalCompaction(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "ledger")
	cfg := restartConfig()
	l := openFile(t, path, cfg, entitlements.WithCompactBytes(2048))
	ctx := t.Context()
	var sizes []int64
	for i := range 20 {
		for _, id := range []string{"free", "roll"} {
			p, _ := l.Resolve(ctx, "sk-"+id)
			spend(t, l, p, 1)
		}
		if err := l.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		if i%5 == 4 {
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			sizes = append(sizes, fi.Size())
		}
	}
	for range 1000 {
		p, _ := l.Resolve(ctx, "sk-free")
		spend(t, l, p, 1)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	// 1040 spend records are over 17 KiB. Compacted, the file is a
	// snapshot (the accounts and keys, about 1 KiB here) and what followed
	// it: a file is compacted once it has grown by 2 KiB and by four times
	// its last snapshot, so where the last compaction fell decides where
	// between 1 and 5 snapshots' size it ends.
	if fi.Size() > 6<<10 {
		t.Errorf("file is %d bytes after 1040 spends with compaction at 2 KiB (sizes %v)", fi.Size(), sizes)
	}
	l2 := openFile(t, path, cfg)
	for id, want := range map[string]entitlements.Amount{"free": 1020, "roll": 20} {
		a, err := l2.Account(ctx, id)
		if err != nil || a.Budget.Spent != want {
			t.Errorf("account %s after compaction: spent %d (%v), want %d", id, a.Budget.Spent, err, want)
		}
	}
}

// envCrashChild makes the test binary the child of TestLocalCrashKill.
const envCrashChild = "HELEXA_LEDGER_CRASH_CHILD"

// A process killed with SIGKILL in the middle of settling loses only what
// it settled after its last completed Sync, and at most a sync interval's
// worth: the reopened ledger holds at least every synced settle and no
// settle that never happened.
func TestLocalCrashKill(t *testing.T) {
	if path := os.Getenv(envCrashChild); path != "" {
		crashChild(path)
		return
	}
	t.Parallel()
	path := filepath.Join(t.TempDir(), "ledger")
	cmd := exec.Command(os.Args[0], "-test.run=^TestLocalCrashKill$", "-test.count=1")
	cmd.Env = append(os.Environ(), envCrashChild+"="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	var synced, settled int64
	killed := false
	for sc.Scan() {
		var n int64
		if _, err := fmt.Sscanf(sc.Text(), "synced %d", &n); err == nil {
			synced = n
			if n >= 2000 && !killed {
				killed = true
				_ = cmd.Process.Kill()
			}
		} else if _, err := fmt.Sscanf(sc.Text(), "settled %d", &n); err == nil {
			settled = n
		}
	}
	_ = cmd.Wait()
	if !killed {
		t.Fatalf("the child ended before it was killed (synced %d)", synced)
	}
	l := openFile(t, path, crashConfig())
	p, _ := l.Resolve(t.Context(), "sk-crash")
	s, err := l.Snapshot(t.Context(), p)
	if err != nil {
		t.Fatal(err)
	}
	// The child may have settled one more than it printed.
	if int64(s.Spent) < synced || int64(s.Spent) > settled+1 {
		t.Errorf("recovered %d settles; want from the %d synced to the %d settled", s.Spent, synced, settled)
	}
	t.Logf("killed after %d settles (%d synced): %d recovered, %d lost", settled, synced, s.Spent, settled-int64(s.Spent))
}

func crashConfig() entitlements.Config {
	return entitlements.Config{Keys: []entitlements.KeyConfig{{Key: "sk-crash", AccountID: "crash"}}}
}

// crashChild settles 1 at a time for ever (until killed, or a minute),
// printing the count after each settle and after each Sync.
func crashChild(path string) {
	cfg := crashConfig()
	cfg.Local = &entitlements.LocalConfig{Path: path}
	l, err := entitlements.OpenLocal(cfg)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	ctx := context.Background()
	p, _ := l.Resolve(ctx, "sk-crash")
	deadline := time.Now().Add(time.Minute)
	for n := int64(1); time.Now().Before(deadline); n++ {
		r, err := l.Reserve(ctx, p, 1)
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		if err := r.Settle(ctx, 1); err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Printf("settled %d\n", n) // unbuffered: the parent sees every settle
		if n%100 == 0 {
			if err := l.Sync(ctx); err != nil {
				fmt.Println("error", err)
				os.Exit(1)
			}
			fmt.Printf("synced %d\n", n)
		}
	}
	os.Exit(0)
}
