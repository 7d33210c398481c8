//go:build linux

package adversarial_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/catalogue"
	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/cortex/metering"
	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/internal/proctest"
	"github.com/helexa-ai/helexa-go/neuron"
	"github.com/helexa-ai/helexa-go/neuron/sim"
)

// The binaries of the suite, built once by the first test that needs them,
// in a directory TestMain removes. (Copied from internal/faulttest, like
// the process helpers below: the two suites share no code.)
// bins are the neuron and helexa-sim binaries the suite runs.
var bins = proctest.Binaries{Prefix: "helexa-adversarial-"}

func TestMain(m *testing.M) { bins.Main(m, "adversarial") }

// binaries builds the binaries once.
func binaries(t *testing.T) { bins.Build(t) }

// Settings of the suite.
const (
	neuronToken = "adversarial-neuron-token"
	model       = "adv"
	// engineContext is the engine's context: what an unbounded request
	// (n_predict -1) generates at most per choice.
	engineContext = 2048
	// defaultOutput is what the gateway reserves for a request that sets
	// no maximum output, far below what a hidden bound asks the engine for.
	defaultOutput = 64
	// idleTimeout is the gateway's stream idle timeout: a stream that sends
	// nothing (or whose client reads nothing) for this long is cut.
	idleTimeout = 1500 * time.Millisecond
	// sendBuffer is the socket send buffer of the gateway's connections to
	// clients, so that a client that stops reading blocks the gateway soon.
	sendBuffer = 4096
)

// engineArgs are the helexa-sim flags of the model: a fast engine with a
// small context, sending the headers llama-server sends.
var engineArgs = []string{"--context", strconv.Itoa(engineContext),
	"--header", "Server: helexa-sim", "--header", "Access-Control-Allow-Origin: *"}

// engineSpec is the engine a neuron of the suite runs for its one model.
type engineSpec struct {
	name   string   // the engine template's name
	argv   []string // its command, with the neuron's placeholders
	model  string   // the model id
	source string   // what the engine loads ({model}); "" for the id
}

// simEngine is helexa-sim serving the model "adv".
func simEngine() engineSpec {
	return engineSpec{name: "sim", model: model,
		argv: append([]string{bins.Sim, "--host", "{host}", "--port", "{port}", "--model", "{id}"}, engineArgs...)}
}

// neuronProc is the neuron process.
type neuronProc struct {
	url  string
	cmd  *exec.Cmd
	logs *proctest.LockedBuffer
	done chan struct{} // closed when the process has exited
	err  error         // the exit status; read after done
	hc   *http.Client
	sim  string // the URL of its engine (helexa-sim, or the one engineSpec runs)
}

// startNeuron starts a neuron process serving the model on eng, waits
// until it is loaded, finds its engine, and registers the cleanup that
// stops it.
func startNeuron(t *testing.T, eng engineSpec) *neuronProc {
	t.Helper()
	var lastErr error
	for range 3 { // a port taken between the pick and the neuron's bind
		n, err := tryNeuron(t, eng)
		if err == nil {
			return n
		}
		lastErr = err
	}
	t.Fatalf("the neuron did not start: %v", lastErr)
	return nil
}

func tryNeuron(t *testing.T, eng engineSpec) (*neuronProc, error) {
	t.Helper()
	addr := proctest.FreeAddr(t)
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "listen = %q\ntoken = %q\ndrain_timeout = \"5s\"\n", addr, neuronToken)
	fmt.Fprintf(&cfg, "[discovery]\nkind = \"static\"\nhostname = \"adv\"\n[[discovery.devices]]\nindex = 0\ntotal_mb = 81920\n")
	fmt.Fprintf(&cfg, "[admission]\nmax_in_flight = 64\nmax_queue = 64\nmax_wait = \"10s\"\n")
	fmt.Fprintf(&cfg, "[[engines]]\nname = %q\ncommand = [%s]\nstart_timeout = \"30s\"\nstop_timeout = \"2s\"\n", eng.name, proctest.QuoteAll(eng.argv))
	fmt.Fprintf(&cfg, "[[default_models]]\nmodel_id = %q\nengine = %q\nvram_mb = 1000\n", eng.model, eng.name)
	if eng.source != "" {
		fmt.Fprintf(&cfg, "source = %q\n", eng.source)
	}
	path := filepath.Join(t.TempDir(), "neuron.toml")
	if err := os.WriteFile(path, []byte(cfg.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	n := &neuronProc{url: "http://" + addr, logs: &proctest.LockedBuffer{}, done: make(chan struct{}),
		hc: &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}}
	n.cmd = exec.Command(bins.Neuron, "--config", path)
	n.cmd.Stdout, n.cmd.Stderr = n.logs, n.logs
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		n.err = n.cmd.Wait()
		close(n.done)
	}()
	c, err := neuron.NewClient(n.url, neuron.WithToken(neuronToken), neuron.WithDoer(n.hc))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		h, err := c.Health(t.Context())
		if err == nil && h.Activation.Loaded == 1 {
			break
		}
		select {
		case <-n.done:
			n.hc.CloseIdleConnections()
			return nil, fmt.Errorf("exited (%v) before serving; logs:\n%s", n.err, n.logs)
		default:
		}
		if err == nil && h.Activation.Failed > 0 || time.Now().After(deadline) {
			n.kill()
			t.Fatalf("the model did not load (health %+v, %v); logs:\n%s", h, err, n.logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Cleanup(func() { n.stop(t) })
	engines := proctest.ChildrenOf(n.cmd.Process.Pid)
	if len(engines) != 1 {
		t.Fatalf("the neuron runs %d engines, want 1", len(engines))
	}
	u, err := engineURL(engines[0])
	if err != nil {
		t.Fatal(err)
	}
	n.sim = u
	return n, nil
}

// engineURL reads the --host and --port of a helexa-sim process from its
// command line.
func engineURL(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return "", err
	}
	args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	var host, port string
	for i := 0; i+1 < len(args); i++ {
		switch args[i] {
		case "--host":
			host = args[i+1]
		case "--port":
			port = args[i+1]
		}
	}
	if host == "" || port == "" {
		return "", fmt.Errorf("no --host and --port in the engine's command line %q", args)
	}
	return "http://" + net.JoinHostPort(host, port), nil
}

// stop ends the neuron (SIGTERM, then SIGKILL after 10 s) and checks that
// its engine does not outlive it.
func (n *neuronProc) stop(t *testing.T) {
	engines := proctest.ChildrenOf(n.cmd.Process.Pid)
	select {
	case <-n.done:
	default:
		_ = n.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-n.done:
		case <-time.After(10 * time.Second):
			t.Errorf("the neuron ignored SIGTERM for 10 s")
			n.kill()
		}
	}
	n.hc.CloseIdleConnections()
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range engines {
		for proctest.Alive(pid) {
			if time.Now().After(deadline) {
				t.Errorf("engine process %d outlived its neuron", pid)
				_ = syscall.Kill(pid, syscall.SIGKILL)
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if t.Failed() {
		t.Logf("neuron logs:\n%s", n.logs)
	}
}

func (n *neuronProc) kill() {
	_ = n.cmd.Process.Kill()
	<-n.done
}

// stats returns the engine's own counters, once no request is in flight
// there (or after 10 s, reporting it).
func (n *neuronProc) stats(t *testing.T) sim.Stats {
	t.Helper()
	var s sim.Stats
	deadline := time.Now().Add(10 * time.Second)
	for {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, n.sim+"/sim/stats", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := n.hc.Do(req)
		if err != nil {
			t.Fatalf("GET /sim/stats: %v", err)
		}
		s = sim.Stats{}
		err = json.NewDecoder(resp.Body).Decode(&s)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /sim/stats: status %d, %v", resp.StatusCode, err)
		}
		if s.InFlight == 0 {
			return s
		}
		if time.Now().After(deadline) {
			t.Errorf("the engine still serves %d requests 10 s after the case ended", s.InFlight)
			return s
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// account is one API key of the suite, with an account of its own.
type account struct {
	key, id string
	cap     int64
	limits  entitlements.Limits
}

func (a account) principal() entitlements.Principal {
	return entitlements.Principal{AccountID: a.id, KeyID: a.id}
}

// recorder is a meter that keeps every record.
type recorder struct {
	mu   sync.Mutex
	recs []metering.Record
}

func (r *recorder) Record(rec metering.Record) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec)
}

// of returns the records of the key named id.
func (r *recorder) of(id string) []metering.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []metering.Record
	for _, rec := range r.recs {
		if rec.KeyID == id {
			out = append(out, rec)
		}
	}
	return out
}

// stack is a Gateway over the neuron process, served by an httptest
// server whose connections have small send buffers, with a Local provider
// holding the accounts.
type stack struct {
	t      *testing.T
	n      *neuronProc
	gw     *cortex.Gateway
	srv    *httptest.Server
	local  *entitlements.Local
	meter  *recorder
	logs   *proctest.LockedBuffer
	client *http.Client
}

// newStack starts the neuron and the gateway, with accounts of each cap.
func newStack(t *testing.T, accounts []account) *stack {
	t.Helper()
	return newStackFor(t, accounts, simEngine())
}

// newStackFor is newStack with the neuron running eng.
func newStackFor(t *testing.T, accounts []account, eng engineSpec) *stack {
	t.Helper()
	n := startNeuron(t, eng)
	var keys []entitlements.KeyConfig
	for _, a := range accounts {
		keys = append(keys, entitlements.KeyConfig{Key: a.key, AccountID: a.id, KeyID: a.id, HardCap: new(a.cap),
			MaxInFlight: a.limits.MaxInFlight})
	}
	local, err := entitlements.NewLocal(entitlements.Config{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	cat, err := catalogue.New([]catalogue.Model{{ID: eng.model, Engine: eng.name, Source: eng.source, VRAMMB: 1000}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	logs := &proctest.LockedBuffer{}
	meter := &recorder{}
	gw, err := cortex.NewGateway([]cortex.NeuronConfig{{Name: "adv", Endpoint: n.url, Token: neuronToken}}, cat,
		cortex.WithProvider(local), cortex.WithRequireAuth(true), cortex.WithMeter(meter),
		cortex.WithDefaultMaxOutput(defaultOutput), cortex.WithStreamIdleTimeout(idleTimeout),
		cortex.WithLogger(slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))),
		cortex.WithPollerOptions(route.WithInterval(100*time.Millisecond)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- gw.Run(ctx) }()
	srv := httptest.NewUnstartedServer(gw)
	srv.Listener = smallBuffers{srv.Listener}
	srv.Start()
	s := &stack{t: t, n: n, gw: gw, srv: srv, local: local, meter: meter, logs: logs,
		client: &http.Client{Transport: &http.Transport{}, Timeout: 20 * time.Second}}
	t.Cleanup(func() {
		s.srv.Close()
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		if err := gw.Shutdown(sctx); err != nil {
			t.Errorf("gateway shutdown: %v", err)
		}
		cancel()
		if err := <-ran; err != nil {
			t.Errorf("poller: %v", err)
		}
		s.client.CloseIdleConnections()
		if t.Failed() {
			t.Logf("gateway logs:\n%s", logs)
		}
	})
	proctest.Eventually(t, 30*time.Second, "the neuron healthy with the model loaded", func() bool {
		ns := gw.Fleet().Neuron("adv")
		if ns == nil || !ns.Healthy {
			return false
		}
		m := ns.Model(eng.model)
		return m != nil && m.Status == neuron.StatusLoaded
	})
	return s
}

// smallBuffers gives every accepted TCP connection a small send buffer.
type smallBuffers struct{ net.Listener }

func (l smallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(sendBuffer)
	}
	return c, err
}

// snapshot returns the account's budget.
func (s *stack) snapshot(a account) entitlements.BudgetSnapshot {
	s.t.Helper()
	snap, err := s.local.Snapshot(context.Background(), a.principal())
	if err != nil {
		s.t.Fatal(err)
	}
	return snap
}

// answer is what a client got.
type answer struct {
	status int
	header http.Header
	body   []byte
	err    error // reading the body
}

// post sends body to path (which may carry a query) with a's key and reads
// the whole answer.
func (s *stack) post(t *testing.T, a account, path, body string) answer {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, s.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+a.key)
	resp, err := s.client.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, header: resp.Header, body: b, err: err}
}
