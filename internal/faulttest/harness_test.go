package faulttest_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/catalogue"
	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/internal/proctest"
	"github.com/helexa-ai/helexa-go/internal/redact"
	"github.com/helexa-ai/helexa-go/neuron"
)

// The binaries of the suite, built once by the first test that needs
// them (so that listing or benchmarking the package builds nothing), in a
// directory TestMain removes.
// bins are the neuron and helexa-sim binaries the suite runs.
var bins = proctest.Binaries{Prefix: "helexa-faulttest-"}

func TestMain(m *testing.M) { bins.Main(m, "faulttest") }

// binaries builds the binaries once.
func binaries(t *testing.T) { bins.Build(t) }

// suite skips the test under -short and marks it parallel.
func suite(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("faulttest: the fault suite runs real neuron and engine processes; skipped under -short")
	}
	t.Parallel()
	binaries(t)
}

// Settings shared by the neurons and the gateway of the suite.
const (
	neuronToken = "fault-suite-neuron-token"
	apiKey      = "sk-fault-suite-0123456789"
	account     = "acct"
	pollEvery   = 100 * time.Millisecond
)

// The models of the catalogue, one per behaviour of the simulated engine
// (an engine template of the neuron each).
const (
	modelFast   = "fast"   // answers at once
	modelSlow   = "slow"   // 5 tokens per second
	modelCrashy = "crashy" // the engine exits after 5 tokens of an answer; loads in 500 ms
	modelHang   = "hang"   // sends the first token, then nothing
	modelLlama  = "llama"  // handles connections as llama-server does (connload_test.go)
)

// engineFlags are the helexa-sim flags of each model's engine template.
var engineFlags = map[string][]string{
	modelFast:   nil,
	modelSlow:   {"--tps", "5"},
	modelCrashy: {"--tps", "50", "--crash-after", "5", "--load-time", "500ms"},
	modelHang:   {"--hang"},
	modelLlama:  {"--llama-connections", "--idle-timeout", "20ms"},
}

// neuronProc is one neuron process.
type neuronProc struct {
	name   string
	url    string
	cmd    *exec.Cmd
	logs   *proctest.LockedBuffer
	done   chan struct{} // closed when the process has exited
	err    error         // the exit status; read after done
	client *neuron.Client
	hc     *http.Client
}

// startNeuron starts a neuron process serving the given models (loaded at
// start, as default models), waits until they are loaded, and registers
// the cleanup that stops it and checks that it left no engine behind.
func startNeuron(t *testing.T, name string, models ...string) *neuronProc {
	t.Helper()
	var lastErr error
	for range 3 { // a port taken between the pick and the neuron's bind
		n, err := tryNeuron(t, name, models)
		if err == nil {
			return n
		}
		lastErr = err
	}
	t.Fatalf("neuron %s did not start: %v", name, lastErr)
	return nil
}

func tryNeuron(t *testing.T, name string, models []string) (*neuronProc, error) {
	t.Helper()
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "drain_timeout = \"10s\"\n")
	fmt.Fprintf(&cfg, "[discovery]\nkind = \"static\"\nhostname = %q\n[[discovery.devices]]\nindex = 0\ntotal_mb = 81920\n", name)
	fmt.Fprintf(&cfg, "[admission]\nmax_in_flight = 8\nmax_queue = 16\nmax_wait = \"10s\"\n")
	for id, flags := range engineFlags {
		argv := append([]string{bins.Sim, "--host", "{host}", "--port", "{port}", "--model", "{id}"}, flags...)
		fmt.Fprintf(&cfg, "[[engines]]\nname = %q\ncommand = [%s]\nstart_timeout = \"30s\"\nstop_timeout = \"2s\"\n", "sim-"+id, proctest.QuoteAll(argv))
	}
	for _, id := range models {
		fmt.Fprintf(&cfg, "[[default_models]]\nmodel_id = %q\nengine = %q\nvram_mb = 1000\n", id, "sim-"+id)
	}
	n := spawnNeuron(t, name, cfg.String(), 10*time.Second)
	if err := n.awaitServing(t, len(models)); err != nil {
		return nil, err
	}
	t.Cleanup(func() { n.stop(t) })
	return n, nil
}

// spawnNeuron starts a neuron process named name on a free address, with
// the neuron.toml body cfg after its listen and token lines, and a client
// whose calls time out after timeout. The caller waits for it
// (awaitServing) and registers its stop.
func spawnNeuron(t *testing.T, name, cfg string, timeout time.Duration) *neuronProc {
	t.Helper()
	addr := proctest.FreeAddr(t)
	path := filepath.Join(t.TempDir(), "neuron.toml")
	if err := os.WriteFile(path, fmt.Appendf(nil, "listen = %q\ntoken = %q\n%s", addr, neuronToken, cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	n := &neuronProc{name: name, url: "http://" + addr, logs: &proctest.LockedBuffer{}, done: make(chan struct{}),
		hc: &http.Client{Transport: &http.Transport{}, Timeout: timeout}}
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
		n.kill()
		t.Fatal(err)
	}
	n.client = c
	return n
}

// awaitServing waits up to 30 s until the neuron answers with its
// default models loaded. A neuron that exits first (another process took
// its port) is an error, for the caller to start another; a model that
// fails to load, or the deadline, fails the test.
func (n *neuronProc) awaitServing(t *testing.T, models int) error {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		h, err := n.client.Health(t.Context())
		if err == nil && h.Activation.Loaded == models {
			return nil
		}
		select {
		case <-n.done:
			n.hc.CloseIdleConnections()
			return fmt.Errorf("exited (%v) before serving; logs:\n%s", n.err, n.logs)
		default:
		}
		if err == nil && h.Activation.Failed > 0 || time.Now().After(deadline) {
			n.kill()
			t.Fatalf("neuron %s: models not loaded (health %+v, %v); logs:\n%s", n.name, h, err, n.logs)
		}
		time.Sleep(10 * time.Millisecond) // the pace of the health polls
	}
}

// stop ends the neuron (SIGTERM, then SIGKILL after 20 s) unless it has
// exited, and checks that none of its engines outlives it.
func (n *neuronProc) stop(t *testing.T) {
	engines := n.engines()
	select {
	case <-n.done:
	default:
		_ = n.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-n.done:
		case <-time.After(20 * time.Second):
			t.Errorf("neuron %s ignored SIGTERM for 20 s", n.name)
			n.kill()
		}
	}
	n.hc.CloseIdleConnections()
	waitGone(t, engines)
	if t.Failed() {
		t.Logf("neuron %s logs:\n%s", n.name, n.logs)
	}
}

// kill sends SIGKILL and waits for the exit.
func (n *neuronProc) kill() {
	_ = n.cmd.Process.Kill()
	<-n.done
}

// engines returns the pids of the neuron's child processes.
func (n *neuronProc) engines() []int {
	select {
	case <-n.done:
		return nil
	default:
	}
	return proctest.ChildrenOf(n.cmd.Process.Pid)
}

// inFlight returns the requests in flight at the neuron for model, from
// its GET /health.
func (n *neuronProc) inFlight(t *testing.T, model string) int {
	t.Helper()
	h, err := n.client.Health(t.Context())
	if err != nil {
		t.Fatalf("neuron %s health: %v", n.name, err)
	}
	for _, m := range h.Models {
		if m.ID == model {
			return m.InFlight + m.QueueDepth
		}
	}
	t.Fatalf("neuron %s has no model %s: %+v", n.name, model, h)
	return 0
}

// status returns model's status at the neuron ("" when it is not listed).
func (n *neuronProc) status(t *testing.T, model string) neuron.ModelStatus {
	t.Helper()
	ms, err := n.client.Models(t.Context())
	if err != nil {
		t.Fatalf("neuron %s models: %v", n.name, err)
	}
	for _, m := range ms {
		if m.ID == model {
			return m.Status
		}
	}
	return ""
}

// waitGone waits up to 10 s for every pid to exit.
func waitGone(t *testing.T, pids []int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range pids {
		for proctest.Alive(pid) {
			if time.Now().After(deadline) {
				t.Errorf("engine process %d outlived its neuron", pid)
				_ = syscall.Kill(pid, syscall.SIGKILL)
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// stack is a Gateway over neuron processes, served by an httptest server,
// with a Local provider holding one key.
type stack struct {
	t      *testing.T
	gw     *cortex.Gateway
	srv    *httptest.Server
	local  *entitlements.Local
	logs   *proctest.LockedBuffer
	client *http.Client
}

// newStack builds the gateway over the neurons (polled every pollEvery
// unless opts say otherwise) with the sim models of engineFlags, runs its
// poller, and waits until every neuron is healthy with its models loaded.
// The cleanup checks the status page, shuts it down and checks that the
// key holds no reservation.
func newStack(t *testing.T, neurons []*neuronProc, opts ...cortex.GatewayOption) *stack {
	t.Helper()
	var models []catalogue.Model
	for id := range engineFlags {
		models = append(models, catalogue.Model{ID: id, Engine: "sim-" + id, VRAMMB: 1000})
	}
	cat, err := catalogue.New(models, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Ties go to the first neuron name: the scenarios know which replica
	// a request tries first.
	s := serveStack(t, neurons, cat, 1<<40, append([]cortex.GatewayOption{cortex.WithRouteSeeds(func() uint64 { return 0 })}, opts...)...)
	t.Cleanup(s.checkStatusClean) // runs before serveStack's cleanup
	return s
}

// serveStack runs a gateway over the neurons with the catalogue cat and
// one key capped at cap (polled every pollEvery unless opts say
// otherwise), and waits until every neuron is healthy with the models it
// lists loaded. The cleanup shuts it down, checks that the key holds no
// reservation, and logs the gateway's and the neurons' output when the
// test failed. Every stack of the suites, sim or real engine, is one.
func serveStack(t *testing.T, neurons []*neuronProc, cat *catalogue.Catalogue, cap int64, opts ...cortex.GatewayOption) *stack {
	t.Helper()
	local, err := entitlements.NewLocal(entitlements.Config{Keys: []entitlements.KeyConfig{
		{Key: apiKey, AccountID: account, HardCap: new(cap)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	var configs []cortex.NeuronConfig
	for _, n := range neurons {
		configs = append(configs, cortex.NeuronConfig{Name: n.name, Endpoint: n.url, Token: neuronToken})
	}
	logs := &proctest.LockedBuffer{}
	opts = append([]cortex.GatewayOption{
		cortex.WithProvider(local), cortex.WithRequireAuth(true),
		cortex.WithLogger(slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))),
		cortex.WithPollerOptions(route.WithInterval(pollEvery)),
	}, opts...)
	gw, err := cortex.NewGateway(configs, cat, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- gw.Run(ctx) }()
	s := &stack{t: t, gw: gw, srv: httptest.NewServer(gw), local: local, logs: logs,
		client: &http.Client{Transport: &http.Transport{}}}
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
		s.settled(time.Second)
		if t.Failed() {
			t.Logf("gateway logs:\n%s", logs)
			for _, n := range neurons {
				t.Logf("neuron %s logs:\n%s", n.name, n.logs)
			}
		}
	})
	proctest.Eventually(t, 30*time.Second, "every neuron healthy with its models loaded", func() bool {
		f := gw.Fleet()
		for _, n := range neurons {
			ns := f.Neuron(n.name)
			if ns == nil || !ns.Healthy {
				return false
			}
			for _, m := range ns.Models {
				if m.Status != neuron.StatusLoaded {
					return false
				}
			}
		}
		return true
	})
	return s
}

// settled checks, for up to within, that the key holds no reservation.
func (s *stack) settled(within time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(within)
	for {
		snap, err := s.local.Snapshot(context.Background(), entitlements.Principal{AccountID: account, KeyID: account})
		if err != nil {
			s.t.Fatal(err)
		}
		if snap.Reserved == 0 {
			return
		}
		if time.Now().After(deadline) {
			s.t.Errorf("%d still reserved %v after the request ended", snap.Reserved, within)
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// spent returns what the key has spent.
func (s *stack) spent() entitlements.Amount {
	s.t.Helper()
	snap, err := s.local.Snapshot(context.Background(), entitlements.Principal{AccountID: account, KeyID: account})
	if err != nil {
		s.t.Fatal(err)
	}
	return snap.Spent
}

// chat sends a chat completion for model with the key and returns the
// answer; the caller closes its body.
func (s *stack) chat(ctx context.Context, model string, maxTokens int, stream bool) *http.Response {
	s.t.Helper()
	body := fmt.Sprintf(`{"model":%q,"max_tokens":%d,"stream":%t,"messages":[{"role":"user","content":"tell me a story"}]}`,
		model, maxTokens, stream)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.srv.URL+"/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+apiKey)
	resp, err := s.client.Do(req)
	if err != nil {
		s.t.Fatalf("POST /v1/chat/completions: %v", err)
	}
	return resp
}

// chatOnce sends a non-streaming chat completion and returns the status,
// the headers and the body.
func (s *stack) chatOnce(model string, maxTokens int) (int, http.Header, string) {
	s.t.Helper()
	resp := s.chat(s.t.Context(), model, maxTokens, false)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatalf("reading the answer: %v", err)
	}
	if resp.StatusCode >= 400 && !redact.Clean(string(b)) {
		s.t.Errorf("a %d answer tells the client about the inside of the fleet: %v", resp.StatusCode, redact.Find(string(b)))
	}
	return resp.StatusCode, resp.Header, string(b)
}

// checkStatusClean checks that the status page's JSON, as a client key
// that is not an admin sees it, tells nothing about the inside of the
// fleet: no address, port, path or transport error, whatever happened in
// the scenario.
func (s *stack) checkStatusClean() {
	s.t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.srv.URL+"/status.json", nil)
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+apiKey)
	resp, err := s.client.Do(req)
	if err != nil {
		s.t.Errorf("GET /status.json: %v", err)
		return
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		s.t.Errorf("GET /status.json: status %d, %v", resp.StatusCode, err)
		return
	}
	if !strings.Contains(string(b), `"neurons"`) {
		s.t.Errorf("the status a client sees shows no fleet: %.300s", b)
	}
	// The test's own loopback addresses are what would leak.
	if !redact.Clean(string(b)) {
		s.t.Errorf("the status a client sees tells about the inside of the fleet: %v", redact.Find(string(b)))
	}
}

// events reads an SSE answer: the data of each event, in order, sent on a
// channel that is closed when the stream ends; the error that ended it
// (nil at a clean end) is then available from err.
type events struct {
	ch   chan string
	done chan struct{}
	err  error
}

func readEvents(body io.Reader) *events {
	e := &events{ch: make(chan string, 1024), done: make(chan struct{})}
	go func() {
		defer close(e.done)
		defer close(e.ch)
		br := bufio.NewReader(body)
		var data string
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				switch {
				case !errors.Is(err, io.EOF):
					e.err = err
				case line != "" || data != "":
					e.err = io.ErrUnexpectedEOF // cut inside an event
				}
				return
			}
			line = strings.TrimRight(line, "\r\n")
			switch {
			case line == "":
				if data != "" {
					e.ch <- data
				}
				data = ""
			case strings.HasPrefix(line, "data:"):
				data = strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " ")
			}
		}
	}()
	return e
}

// next returns the next event's data, failing the test when none comes
// within d; ok is false at the end of the stream.
func (e *events) next(t *testing.T, d time.Duration) (data string, ok bool) {
	t.Helper()
	select {
	case data, ok = <-e.ch:
		return data, ok
	case <-time.After(d):
		t.Fatalf("no event within %v: the stream hangs", d)
		return "", false
	}
}

// rest reads the remaining events, failing the test when the stream does
// not end within d, and returns them with the error that ended it.
func (e *events) rest(t *testing.T, d time.Duration) ([]string, error) {
	t.Helper()
	var out []string
	deadline := time.After(d)
	for {
		select {
		case data, ok := <-e.ch:
			if !ok {
				<-e.done
				return out, e.err
			}
			out = append(out, data)
		case <-deadline:
			t.Fatalf("the stream did not end within %v: it hangs; %d events so far", d, len(out))
			return out, nil
		}
	}
}
