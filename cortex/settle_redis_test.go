package cortex_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/cortex/cortextest"
	"github.com/helexa-ai/helexa-go/cortex/metering"
	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/entitlements/redisledger"
	"github.com/helexa-ai/helexa-go/internal/redistest"
	"github.com/helexa-ai/helexa-go/neuron/sim"
)

// aofRedis is a redis-server that persists every write to an append-only
// file before answering (appendfsync always), as the ledger requires in
// production, so that the test can kill it and start it again on the same
// port with its data.
type aofRedis struct {
	path, dir, port string
	cmd             *exec.Cmd
	done            chan struct{}
	out             *bytes.Buffer
}

func startAOFRedis(t *testing.T) *aofRedis {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	r := &aofRedis{path: redistest.Path(t), dir: t.TempDir(), port: port}
	r.start(t)
	t.Cleanup(r.kill)
	return r
}

func (r *aofRedis) addr() string { return "127.0.0.1:" + r.port }

// start starts the server and waits until it answers PING.
func (r *aofRedis) start(t *testing.T) {
	t.Helper()
	r.out, r.done = new(bytes.Buffer), make(chan struct{})
	r.cmd = exec.Command(r.path, "--port", r.port, "--bind", "127.0.0.1", "--dir", r.dir, "--save", "",
		"--appendonly", "yes", "--appendfsync", "always", "--loglevel", "warning")
	r.cmd.Stdout, r.cmd.Stderr = r.out, r.out
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("starting redis-server: %v", err)
	}
	done := r.done
	go func() {
		_ = r.cmd.Wait()
		close(done)
	}()
	c := redis.NewClient(&redis.Options{Addr: r.addr(), DialTimeout: 200 * time.Millisecond, MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for c.Ping(t.Context()).Err() != nil {
		select {
		case <-done:
			t.Fatalf("redis-server exited: %s", r.out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server did not answer PING: %s", r.out)
		}
		time.Sleep(10 * time.Millisecond) // poll interval, not synchronisation
	}
}

// kill kills the server (SIGKILL: no shutdown save) and waits for it.
func (r *aofRedis) kill() {
	_ = r.cmd.Process.Kill()
	<-r.done
}

// Redis is killed for two seconds under load and started again: the
// settles that fell into the outage are retried until they land, so that
// afterwards the ledger's spend equals the usage of every answer served,
// which equals the sum of what the meter records say was settled, and
// nothing stays reserved.
func TestSettlesLandAcrossARedisRestart(t *testing.T) {
	t.Parallel()
	rs := startAOFRedis(t)
	client := redis.NewClient(&redis.Options{Addr: rs.addr(), DialTimeout: 200 * time.Millisecond,
		ReadTimeout: 500 * time.Millisecond, WriteTimeout: 500 * time.Millisecond, MaxRetries: -1, DialerRetries: 1, PoolSize: 64})
	t.Cleanup(func() { _ = client.Close() })
	// A short lease: leases whose Reserve ran but whose answer was lost in
	// the kill expire soon (the gateway answered those requests 503).
	ledger, err := redisledger.New(client, redisledger.WithLeaseTTL(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	const secret = "sk-restart"
	p := entitlements.Principal{AccountID: "restart", KeyID: "restart"}
	if err := ledger.AddKey(t.Context(), entitlements.Key{Digest: entitlements.KeyDigest(secret), Principal: p,
		Budget: entitlements.Budget{HardCap: entitlements.Cap(1 << 40)}}); err != nil {
		t.Fatal(err)
	}
	rec := new(recorder)
	spec := loadedA("n1")
	spec.Sim = sim.Config{TokensPerSecond: 400} // answers of 5..40 tokens take 10..100 ms
	fleet := cortextest.NewFleet(t, spec)
	gw, err := cortex.NewGateway(fleet.Configs(), testCatalogue(t),
		cortex.WithPollerOptions(route.WithFailureThreshold(1), route.WithCallTimeout(30*time.Second)),
		cortex.WithProvider(ledger), cortex.WithRequireAuth(true), cortex.WithMeter(rec),
		cortex.WithSettleBackoff(20*time.Millisecond, 200*time.Millisecond),
		cortex.WithSettleOutbox(t.TempDir()+"/settles.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gw)
	t.Cleanup(func() {
		srv.Close()
		shutdown(t, gw)
	})
	if _, err := gw.Poller().(*route.FleetPoller).Refresh(t.Context(), "n1"); err != nil {
		t.Fatal(err)
	}

	var (
		served, unavailable atomic.Int64
		usedTokens          atomic.Int64
		failures            sync.Map
		stop                = make(chan struct{})
		wg                  sync.WaitGroup
	)
	const workers = 8
	for w := range workers {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				body := chatBody("chat-a", `"max_tokens":`+strconv.Itoa(5+(w*7+i*13)%36))
				req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, srv.URL+"/v1/chat/completions", strings.NewReader(body))
				if err != nil {
					failures.Store(err.Error(), true)
					return
				}
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+secret)
				resp, err := srv.Client().Do(req)
				if err != nil {
					failures.Store(err.Error(), true)
					continue
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch {
				case err != nil:
					failures.Store(err.Error(), true)
				case resp.StatusCode == http.StatusOK:
					var v struct {
						Usage struct {
							PromptTokens     int64 `json:"prompt_tokens"`
							CompletionTokens int64 `json:"completion_tokens"`
						} `json:"usage"`
					}
					if err := json.Unmarshal(b, &v); err != nil {
						failures.Store("not JSON: "+string(b), true)
						continue
					}
					served.Add(1)
					usedTokens.Add(v.Usage.PromptTokens + v.Usage.CompletionTokens)
				case resp.StatusCode == http.StatusServiceUnavailable:
					unavailable.Add(1) // Redis down: refused before anything was reserved or served
				default:
					failures.Store(fmt.Sprintf("status %d: %s", resp.StatusCode, b), true)
				}
			}
		})
	}
	stopLoad := sync.OnceFunc(func() { close(stop); wg.Wait() })
	t.Cleanup(stopLoad)

	waitFor(t, "requests served before the outage", func() bool { return served.Load() >= 50 })
	before := served.Load()
	rs.kill()
	<-time.After(2 * time.Second) // the outage, under load
	rs.start(t)
	waitFor(t, "requests served after the outage", func() bool { return served.Load() >= before+50 })
	stopLoad()
	waitFor(t, "the gateway to finish its requests", func() bool { return gw.InFlight() == 0 })

	count := func() (pending, late int) {
		for _, r := range rec.records() {
			switch {
			case r.Kind == metering.KindSettle:
				late++
			case r.SettleState == metering.SettlePending:
				pending++
			}
		}
		return pending, late
	}
	waitFor(t, "every pending settle to end", func() bool { p, l := count(); return p == l })
	pending, _ := count()
	if pending == 0 {
		t.Errorf("no settle was pending: the outage did not hit a settle, and the test proves nothing")
	}

	var settled, recTokens entitlements.Amount
	states := map[metering.SettleState]int{}
	for _, r := range rec.records() {
		settled += r.Settled
		recTokens += entitlements.Amount(r.PromptTokens + r.CompletionTokens)
		if r.Kind == metering.KindSettle {
			states[r.SettleState]++
		}
	}
	var snap entitlements.BudgetSnapshot
	waitFor(t, "the leases of lost answers to expire", func() bool {
		snap, err = ledger.Snapshot(t.Context(), p)
		return err == nil && snap.Reserved == 0
	})
	used := entitlements.Amount(usedTokens.Load())
	t.Logf("served %d answers (%d tokens), %d refused while Redis was down; %d settles pending after the outage, ended %v; "+
		"ledger spent %d, meter settled %d, meter tokens %d",
		served.Load(), used, unavailable.Load(), pending, states, snap.Spent, settled, recTokens)
	if snap.Spent != used || settled != used || recTokens != used {
		t.Errorf("ledger spent %d, meter settled %d, meter tokens %d; want each the usage served, %d", snap.Spent, settled, recTokens, used)
	}
	if states[metering.SettleFailed] != 0 {
		t.Errorf("%d pending settles failed", states[metering.SettleFailed])
	}
	failures.Range(func(k, _ any) bool {
		t.Errorf("request failed: %v", k)
		return true
	})
}
