//go:build unix

package engine_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/helexa-ai/helexa-go/clock/clocktest"
	"github.com/helexa-ai/helexa-go/neuron"
	"github.com/helexa-ai/helexa-go/neuron/engine"
)

// simEngine is an engine template running helexa-sim with extra flags.
func simEngine(name string, flags ...string) neuron.EngineConfig {
	return neuron.EngineConfig{
		Name:         name,
		Command:      append([]string{simBin, "--host", "{host}", "--port", "{port}", "--model", "{id}"}, flags...),
		StartTimeout: neuron.Duration(20 * time.Second),
		StopTimeout:  neuron.Duration(5 * time.Second),
	}
}

// shellEngine runs script with sh -c; the script should end by exec'ing
// helexa-sim (see simCmd).
func shellEngine(name, script string) neuron.EngineConfig {
	return neuron.EngineConfig{
		Name:         name,
		Command:      []string{"/bin/sh", "-c", script},
		StartTimeout: neuron.Duration(20 * time.Second),
		StopTimeout:  neuron.Duration(5 * time.Second),
	}
}

// simCmd is the shell command that execs helexa-sim on the template's port.
func simCmd(flags string) string {
	return fmt.Sprintf("exec %s --host {host} --port {port} --model {id} %s", simBin, flags)
}

// newHarness builds a harness with short backoffs that is closed when the
// test ends.
func newHarness(t *testing.T, engines []neuron.EngineConfig, opts ...engine.Option) *engine.Harness {
	t.Helper()
	opts = append([]engine.Option{engine.WithBackoff(50*time.Millisecond, 200*time.Millisecond)}, opts...)
	h, err := engine.New(engines, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := h.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return h
}

// newFakeHarness is newHarness on a fake clock: its backoffs, start and
// stop timeouts and liveness probes wait until the test moves the clock.
func newFakeHarness(t *testing.T, engines []neuron.EngineConfig, opts ...engine.Option) (*engine.Harness, *clocktest.Fake) {
	t.Helper()
	clk := clocktest.New(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	return newHarness(t, engines, append([]engine.Option{engine.WithClock(clk)}, opts...)...), clk
}

// armed waits until n timers and tickers are armed on clk.
func armed(t *testing.T, clk *clocktest.Fake, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	if err := clk.WaitArmed(ctx, n); err != nil {
		t.Fatalf("waiting for %d armed timers (%d are): %v", n, clk.Armed(), err)
	}
}

// waitFor polls cond until it holds or a deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// info returns id's entry in h.Models().
func info(h *engine.Harness, id string) (neuron.ModelInfo, bool) {
	for _, m := range h.Models() {
		if m.ID == id {
			return m, true
		}
	}
	return neuron.ModelInfo{}, false
}

// alive reports whether pid is a live process; a zombie (where /proc shows
// one) is dead.
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		// Gone since kill(2), unless there is no /proc to look in.
		_, noProc := os.Stat("/proc/self")
		return noProc != nil
	}
	// pid (comm) S ...: the state follows the last ')'.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// pidFrom finds the last "key=<pid>" in lines.
func pidFrom(t *testing.T, lines []string, key string) int {
	t.Helper()
	re := regexp.MustCompile(`\b` + key + `=(\d+)\b`)
	for _, l := range slices.Backward(lines) {
		if m := re.FindStringSubmatch(l); m != nil {
			pid, _ := strconv.Atoi(m[1])
			return pid
		}
	}
	t.Fatalf("no %s=<pid> in %q", key, lines)
	return 0
}

// chat posts a small chat completion to the model's endpoint.
func chat(ctx context.Context, h *engine.Harness, id string, maxTokens int, stream bool) (int, error) {
	u, err := h.Endpoint(id)
	if err != nil {
		return 0, err
	}
	body := fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"hello"}],"max_tokens":%d,"stream":%t}`, id, maxTokens, stream)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.JoinPath("/v1/chat/completions").String(), strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	// A client of its own, without keep-alives, so no connection outlives
	// the test.
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, err
}

// countLines counts the lines of a file (0 when missing).
func countLines(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}

func TestLoadInferUnload(t *testing.T) {
	t.Parallel()
	h := newHarness(t, []neuron.EngineConfig{simEngine("sim")})
	spec := neuron.LoadSpec{
		ModelID:      "m",
		Devices:      []int{1},
		VRAMMB:       1000,
		Context:      4096,
		Capabilities: []string{"chat"},
	}
	got, err := h.Load(t.Context(), spec)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got.LoadedAt.IsZero() {
		t.Error("LoadedAt is zero after Load")
	}
	want := neuron.ModelInfo{
		ID:           "m",
		Engine:       "sim",
		Status:       neuron.StatusLoaded,
		Devices:      []int{1},
		VRAMUsedMB:   1000,
		Limit:        neuron.Limit{Context: 4096},
		Capabilities: []string{"chat"},
		LoadedAt:     got.LoadedAt,
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("Load (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(h.Models(), []neuron.ModelInfo{want}); diff != "" {
		t.Errorf("Models (-got +want):\n%s", diff)
	}

	u, err := h.Endpoint("m")
	if err != nil {
		t.Fatalf("Endpoint: %v", err)
	}
	if u.Scheme != "http" || u.Hostname() != "127.0.0.1" || u.Port() == "" {
		t.Errorf("Endpoint = %v, want http://127.0.0.1:<port>", u)
	}
	for _, stream := range []bool{false, true} {
		status, err := chat(t.Context(), h, "m", 4, stream)
		if err != nil || status != http.StatusOK {
			t.Fatalf("chat (stream %t) = %d, %v; want 200", stream, status, err)
		}
	}
	if lines, err := h.Logs("m"); err != nil || len(lines) == 0 {
		t.Errorf("Logs = %q, %v; want the engine's output", lines, err)
	}

	if err := h.Unload(t.Context(), "m"); err != nil {
		t.Fatalf("Unload: %v", err)
	}
	if got := h.Models(); len(got) != 0 {
		t.Errorf("Models after Unload = %v, want none", got)
	}
	if _, err := h.Endpoint("m"); !errors.Is(err, neuron.ErrModelNotFound) {
		t.Errorf("Endpoint after Unload: %v, want ErrModelNotFound", err)
	}
	if _, err := h.Logs("m"); !errors.Is(err, neuron.ErrModelNotFound) {
		t.Errorf("Logs after Unload: %v, want ErrModelNotFound", err)
	}
	if status, err := chat(t.Context(), h, "m", 1, false); err == nil {
		t.Errorf("chat after Unload = %d, want an error", status)
	}
	if err := h.Unload(t.Context(), "m"); !errors.Is(err, neuron.ErrModelNotFound) {
		t.Errorf("second Unload: %v, want ErrModelNotFound", err)
	}
}

// recorder is a slog.Handler that keeps the messages and attributes it
// sees.
type recorder struct {
	mu      sync.Mutex
	recs    []string      // "msg key=value ..."
	changed chan struct{} // closed and replaced on each record
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *recorder) WithGroup(string) slog.Handler            { return r }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	var b strings.Builder
	b.WriteString(rec.Message)
	rec.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	r.mu.Lock()
	r.recs = append(r.recs, b.String())
	if r.changed != nil {
		close(r.changed)
		r.changed = nil
	}
	r.mu.Unlock()
	return nil
}

// await waits until n records have message msg: the supervisor has got
// that far.
func (r *recorder) await(t *testing.T, msg string, n int) {
	t.Helper()
	guard := time.NewTimer(15 * time.Second)
	defer guard.Stop()
	for {
		r.mu.Lock()
		got := 0
		for _, s := range r.recs {
			if s == msg || strings.HasPrefix(s, msg+" ") {
				got++
			}
		}
		if r.changed == nil {
			r.changed = make(chan struct{})
		}
		changed := r.changed
		r.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-changed:
		case <-guard.C:
			t.Fatalf("%d records %q, want %d; all: %q", got, msg, n, r.messages())
		}
	}
}

// messages returns the logged messages (without attributes).
func (r *recorder) messages() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, s := range r.recs {
		msg, _, _ := strings.Cut(s, " model=")
		out = append(out, msg)
	}
	return out
}

// values returns attribute key of every record with message msg.
func (r *recorder) values(msg, key string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, s := range r.recs {
		if !strings.HasPrefix(s, msg+" ") {
			continue
		}
		for _, f := range strings.Split(s, " ") {
			if v, ok := strings.CutPrefix(f, key+"="); ok {
				out = append(out, v)
			}
		}
	}
	return out
}

func (r *recorder) find(prefix string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.recs {
		if strings.HasPrefix(s, prefix) {
			return s
		}
	}
	return ""
}

func TestCrashRestart(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	dir := t.TempDir()
	mark, gate := filepath.Join(dir, "mark"), filepath.Join(dir, "gate")
	if err := syscall.Mkfifo(gate, 0o600); err != nil {
		t.Fatal(err)
	}
	// The engine prints its pid, then crashes after streaming 2 tokens of
	// any request. A restarted one waits for a line on gate before it
	// starts, so that the test sees it recovering.
	script := `echo "pid=$$"; if [ -e ` + mark + ` ]; then read _ < ` + gate + `; fi; touch ` + mark + `; ` + simCmd("--crash-after 2")
	h, clk := newFakeHarness(t,
		[]neuron.EngineConfig{shellEngine("sim", script)},
		engine.WithBackoff(200*time.Millisecond, time.Second),
		engine.WithLogger(slog.New(rec)))
	if _, err := h.Load(t.Context(), neuron.LoadSpec{ModelID: "m"}); err != nil {
		t.Fatalf("Load: %v", err)
	}
	logs, _ := h.Logs("m")
	pid := pidFrom(t, logs, "pid")

	// The request fails part way when the engine dies; its error does not
	// matter.
	_, _ = chat(t.Context(), h, "m", 16, true)

	// Failed while the harness waits out the backoff...
	rec.await(t, "engine crashed", 1)
	if mi, _ := info(h, "m"); mi.Status != neuron.StatusFailed || mi.Restarts != 0 {
		t.Errorf("after the crash: status %s, restarts %d; want failed, 0", mi.Status, mi.Restarts)
	}
	armed(t, clk, 1)
	clk.Advance(200 * time.Millisecond)
	// ... recovering from the restart until the engine is ready...
	rec.await(t, "engine restarting", 1)
	if mi, _ := info(h, "m"); mi.Status != neuron.StatusRecovering || mi.Restarts != 1 {
		t.Errorf("after the backoff: status %s, restarts %d; want recovering, 1", mi.Status, mi.Restarts)
	}
	if err := os.WriteFile(gate, []byte("go\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// ... and loaded once it is.
	rec.await(t, "engine ready", 2)
	mi, _ := info(h, "m")
	if mi.Status != neuron.StatusLoaded {
		t.Errorf("after the restart: status %s, want loaded", mi.Status)
	}
	if mi.Restarts != 1 {
		t.Errorf("Restarts = %d, want 1", mi.Restarts)
	}
	if !strings.HasPrefix(mi.LastError, "exit status 1") || !strings.Contains(mi.LastError, fmt.Sprintf("pid=%d", pid)) {
		t.Errorf("LastError = %q, want the exit status and the last output", mi.LastError)
	}
	if alive(pid) {
		t.Errorf("crashed engine %d still alive", pid)
	}
	logs, _ = h.Logs("m")
	if newPid := pidFrom(t, logs, "pid"); newPid == pid {
		t.Errorf("restarted engine has the old pid %d", pid)
	}
	if status, err := chat(t.Context(), h, "m", 1, false); err != nil || status != http.StatusOK {
		t.Errorf("chat after restart = %d, %v; want 200", status, err)
	}
	if s := rec.find("engine crashed"); !strings.Contains(s, "status=exit status 1") {
		t.Errorf("crash log line = %q, want the exit status", s)
	}
	wantMsgs := []string{"engine command", "engine started", "engine ready", "engine crashed", "engine restarting", "engine command", "engine started", "engine ready"}
	if diff := cmp.Diff(rec.messages(), wantMsgs); diff != "" {
		t.Errorf("log lines (-got +want):\n%s", diff)
	}
}

func TestCrashKilled(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	h, clk := newFakeHarness(t, []neuron.EngineConfig{shellEngine("sim", `echo "pid=$$"; `+simCmd(""))}, engine.WithLogger(slog.New(rec)))
	if _, err := h.Load(t.Context(), neuron.LoadSpec{ModelID: "m"}); err != nil {
		t.Fatalf("Load: %v", err)
	}
	logs, _ := h.Logs("m")
	if err := syscall.Kill(pidFrom(t, logs, "pid"), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	rec.await(t, "engine crashed", 1)
	armed(t, clk, 1)
	clk.Advance(50 * time.Millisecond)
	rec.await(t, "engine ready", 2)
	mi, _ := info(h, "m")
	if mi.Status != neuron.StatusLoaded || mi.Restarts != 1 {
		t.Errorf("after a restart: status %s, restarts %d; want loaded, 1", mi.Status, mi.Restarts)
	}
	if !strings.HasPrefix(mi.LastError, "signal: killed") {
		t.Errorf("LastError = %q, want signal: killed", mi.LastError)
	}

	// Once the engine has stayed ready for the maximum backoff (200ms),
	// the next crash waits the minimum again.
	clk.Advance(200 * time.Millisecond)
	logs, _ = h.Logs("m")
	if err := syscall.Kill(pidFrom(t, logs, "pid"), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	rec.await(t, "engine crashed", 2)
	armed(t, clk, 1)
	clk.Advance(50 * time.Millisecond)
	rec.await(t, "engine ready", 3)
	if mi, _ := info(h, "m"); mi.Status != neuron.StatusLoaded || mi.Restarts != 2 {
		t.Errorf("after a second restart: status %s, restarts %d; want loaded, 2", mi.Status, mi.Restarts)
	}
	if diff := cmp.Diff(rec.values("engine crashed", "restart_in"), []string{"50ms", "50ms"}); diff != "" {
		t.Errorf("restart delays (-got +want):\n%s", diff)
	}
}

func TestRestartBackoff(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	mark := filepath.Join(t.TempDir(), "mark")
	// The first engine loads; every later one fails at once.
	script := `if [ -e ` + mark + ` ]; then echo "pid=$$ failing"; exit 1; fi; touch ` + mark + `; echo "pid=$$"; ` + simCmd("")
	h, clk := newFakeHarness(t, []neuron.EngineConfig{shellEngine("sim", script)}, engine.WithLogger(slog.New(rec)))
	if _, err := h.Load(t.Context(), neuron.LoadSpec{ModelID: "m"}); err != nil {
		t.Fatalf("Load: %v", err)
	}
	logs, _ := h.Logs("m")
	if err := syscall.Kill(pidFrom(t, logs, "pid"), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 5; i++ {
		rec.await(t, "engine crashed", i)
		if mi, _ := info(h, "m"); mi.Status != neuron.StatusFailed || mi.Restarts != i-1 {
			t.Errorf("after crash %d: status %s, restarts %d; want failed, %d", i, mi.Status, mi.Restarts, i-1)
		}
		if i < 5 {
			armed(t, clk, 1)
			clk.Advance(200 * time.Millisecond) // the longest backoff
		}
	}
	if diff := cmp.Diff(rec.values("engine crashed", "restart_in"), []string{"50ms", "100ms", "200ms", "200ms", "200ms"}); diff != "" {
		t.Errorf("restart delays (-got +want):\n%s", diff)
	}
	mi, _ := info(h, "m")
	if !strings.HasPrefix(mi.LastError, "exit status 1") || !strings.Contains(mi.LastError, "failing") {
		t.Errorf("LastError = %q, want the failed restart", mi.LastError)
	}
	if _, err := h.Endpoint("m"); !errors.Is(err, neuron.ErrNotReady) {
		t.Errorf("Endpoint of a crashing model: %v, want ErrNotReady", err)
	}
	if err := h.Unload(t.Context(), "m"); err != nil {
		t.Fatalf("Unload of a crashing model: %v", err)
	}
	if got := h.Models(); len(got) != 0 {
		t.Errorf("Models = %v, want none", got)
	}
}

func TestBindRaceRetried(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	mark := filepath.Join(t.TempDir(), "mark")
	script := `if [ ! -e ` + mark + ` ]; then touch ` + mark + `; echo "listen tcp: bind: address already in use"; exit 1; fi; ` + simCmd("")
	h := newHarness(t, []neuron.EngineConfig{shellEngine("sim", script)}, engine.WithLogger(slog.New(rec)))
	mi, err := h.Load(t.Context(), neuron.LoadSpec{ModelID: "m"})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if mi.Restarts != 0 || mi.LastError != "" {
		t.Errorf("after a retried bind: Restarts %d, LastError %q; want neither", mi.Restarts, mi.LastError)
	}
	if rec.find("engine port taken") == "" {
		t.Errorf("no port retry logged: %q", rec.messages())
	}
}

func TestLoadWhileUnloading(t *testing.T) {
	t.Parallel()
	starts := filepath.Join(t.TempDir(), "starts")
	// A leader that ignores SIGTERM keeps the model "unloading" for the
	// stop timeout.
	cfg := shellEngine("sim", `trap '' TERM; echo start >> `+starts+`; `+simBin+` --host {host} --port {port} --model {id} & while :; do sleep 0.1; done`)
	cfg.StopTimeout = neuron.Duration(300 * time.Millisecond)
	h, clk := newFakeHarness(t, []neuron.EngineConfig{cfg})
	if _, err := h.Load(t.Context(), neuron.LoadSpec{ModelID: "m"}); err != nil {
		t.Fatalf("Load: %v", err)
	}
	unload := func() chan error {
		errc := make(chan error, 1)
		go func() { errc <- h.Unload(t.Context(), "m") }()
		armed(t, clk, 2) // the liveness ticker and the stop timer
		return errc
	}
	errc := unload()
	if mi, _ := info(h, "m"); mi.Status != neuron.StatusUnloading {
		t.Errorf("status %s while the stop timer runs, want unloading", mi.Status)
	}
	if _, err := h.Endpoint("m"); !errors.Is(err, neuron.ErrNotReady) {
		t.Errorf("Endpoint while unloading: %v, want ErrNotReady", err)
	}
	type loaded struct {
		mi  neuron.ModelInfo
		err error
	}
	loadc := make(chan loaded, 1)
	go func() {
		mi, err := h.Load(t.Context(), neuron.LoadSpec{ModelID: "m"})
		loadc <- loaded{mi, err}
	}()
	clk.Advance(300 * time.Millisecond)
	if got := <-loadc; got.err != nil || got.mi.Status != neuron.StatusLoaded {
		t.Fatalf("Load while unloading = %s, %v; want a new load", got.mi.Status, got.err)
	}
	if err := <-errc; err != nil {
		t.Errorf("Unload: %v", err)
	}
	if got := countLines(t, starts); got != 2 {
		t.Errorf("%d engines started, want 2", got)
	}
	// The new engine ignores SIGTERM too.
	errc = unload()
	clk.Advance(300 * time.Millisecond)
	if err := <-errc; err != nil {
		t.Errorf("second Unload: %v", err)
	}
}

func TestUnloadKillsProcessGroup(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	// The engine leaves behind a grandchild that ignores SIGTERM.
	script := `echo "pid=$$"; (trap '' TERM; exec sleep 1000) & echo "child=$!"; ` + simCmd("")
	h := newHarness(t, []neuron.EngineConfig{shellEngine("sim", script)}, engine.WithLogger(slog.New(rec)))
	if _, err := h.Load(t.Context(), neuron.LoadSpec{ModelID: "m"}); err != nil {
		t.Fatalf("Load: %v", err)
	}
	logs, _ := h.Logs("m")
	pid, child := pidFrom(t, logs, "pid"), pidFrom(t, logs, "child")
	if !alive(pid) || !alive(child) {
		t.Fatalf("engine %d or its child %d not running after Load", pid, child)
	}
	if err := h.Unload(t.Context(), "m"); err != nil {
		t.Fatalf("Unload: %v", err)
	}
	if alive(pid) {
		t.Errorf("engine %d survived Unload", pid)
	}
	// The orphaned child is reaped by init, not by us.
	waitFor(t, "the engine's child to die", func() bool { return !alive(child) })
	if s := rec.find("engine stopped"); !strings.Contains(s, "status=exit status 0") {
		t.Errorf("stop log line = %q, want a clean exit after SIGTERM", s)
	}
}

func TestUnloadEscalatesToKill(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	// The group leader, a shell, ignores SIGTERM and outlives the sim.
	cfg := shellEngine("sim", `trap '' TERM; echo "pid=$$"; `+simBin+` --host {host} --port {port} --model {id} & while :; do sleep 0.1; done`)
	cfg.StopTimeout = neuron.Duration(100 * time.Millisecond)
	h, clk := newFakeHarness(t, []neuron.EngineConfig{cfg}, engine.WithLogger(slog.New(rec)))
	if _, err := h.Load(t.Context(), neuron.LoadSpec{ModelID: "m"}); err != nil {
		t.Fatalf("Load: %v", err)
	}
	logs, _ := h.Logs("m")
	pid := pidFrom(t, logs, "pid")
	errc := make(chan error, 1)
	go func() { errc <- h.Unload(t.Context(), "m") }()
	armed(t, clk, 2) // the liveness ticker and the stop timer
	if !alive(pid) {
		t.Errorf("engine %d died of SIGTERM, which it ignores", pid)
	}
	if rec.find("engine ignored SIGTERM") != "" {
		t.Error("SIGKILL before the stop timeout")
	}
	clk.Advance(100 * time.Millisecond)
	if err := <-errc; err != nil {
		t.Fatalf("Unload: %v", err)
	}
	if alive(pid) {
		t.Errorf("engine %d survived Unload", pid)
	}
	if rec.find("engine ignored SIGTERM") == "" {
		t.Errorf("no SIGTERM escalation logged: %q", rec.messages())
	}
	if s := rec.find("engine stopped"); !strings.Contains(s, "status=signal: killed") {
		t.Errorf("stop log line = %q, want signal: killed", s)
	}
}

func TestStartTimeout(t *testing.T) {
	t.Parallel()
	cfg := shellEngine("sim", `echo "pid=$$"; `+simCmd("--load-time 1m"))
	cfg.StartTimeout = neuron.Duration(500 * time.Millisecond)
	rec := &recorder{}
	h, clk := newFakeHarness(t, []neuron.EngineConfig{cfg}, engine.WithLogger(slog.New(rec)))
	errc := make(chan error, 1)
	go func() {
		_, err := h.Load(t.Context(), neuron.LoadSpec{ModelID: "m"})
		errc <- err
	}()
	rec.await(t, "engine started", 1)
	armed(t, clk, 1) // the start timeout
	clk.Advance(499 * time.Millisecond)
	if mi, _ := info(h, "m"); mi.Status != neuron.StatusLoading {
		t.Errorf("status %s before the start timeout, want loading", mi.Status)
	}
	clk.Advance(time.Millisecond)
	err := <-errc
	if !errors.Is(err, neuron.ErrLoadFailed) {
		t.Fatalf("Load error = %v, want ErrLoadFailed", err)
	}
	var le *engine.LoadError
	if !errors.As(err, &le) {
		t.Fatalf("Load error %T is not a *LoadError", err)
	}
	if le.Reason != "not ready after 500ms" || le.ExitCode != -1 || le.ModelID != "m" || le.Engine != "sim" {
		t.Errorf("LoadError = %+v, want a start timeout of m on sim", le)
	}
	pid, _ := strconv.Atoi(rec.values("engine started", "pid")[0])
	if alive(pid) {
		t.Errorf("engine %d survived its start timeout", pid)
	}
	if got := h.Models(); len(got) != 0 {
		t.Errorf("Models after a failed load = %v, want none", got)
	}
}

func TestExitDuringLoad(t *testing.T) {
	t.Parallel()
	h := newHarness(t, []neuron.EngineConfig{shellEngine("sim", `echo "starting {id}"; `+simCmd("--fail-load --load-time 100ms"))})
	_, err := h.Load(t.Context(), neuron.LoadSpec{ModelID: "m"})
	if !errors.Is(err, neuron.ErrLoadFailed) {
		t.Fatalf("Load error = %v, want ErrLoadFailed", err)
	}
	var le *engine.LoadError
	if !errors.As(err, &le) {
		t.Fatalf("Load error %T is not a *LoadError", err)
	}
	if le.ExitCode != 3 || le.Reason != "exit status 3" {
		t.Errorf("LoadError exit = %d %q, want 3", le.ExitCode, le.Reason)
	}
	if !slices.Contains(le.Output, "starting m") || len(le.Output) < 2 {
		t.Errorf("LoadError.Output = %q, want the engine's last lines", le.Output)
	}
	if msg := err.Error(); !strings.Contains(msg, "exit status 3") || !strings.Contains(msg, "starting m") {
		t.Errorf("error message %q lacks the exit status or the output", msg)
	}
	if got := h.Models(); len(got) != 0 {
		t.Errorf("Models after a failed load = %v, want none", got)
	}
	// The id is free again: a new load starts a new engine (and fails again).
	if _, err := h.Load(t.Context(), neuron.LoadSpec{ModelID: "m"}); !errors.Is(err, neuron.ErrLoadFailed) {
		t.Errorf("second Load error = %v, want ErrLoadFailed", err)
	}
}

func TestStartError(t *testing.T) {
	t.Parallel()
	// The command passes the check (it is an executable file) but cannot
	// be executed.
	bin := filepath.Join(t.TempDir(), "engine")
	if err := os.WriteFile(bin, []byte("#!/nonexistent/interpreter\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, []neuron.EngineConfig{{Name: "missing", Command: []string{bin, "--port", "{port}"}}})
	_, err := h.Load(t.Context(), neuron.LoadSpec{ModelID: "m"})
	var le *engine.LoadError
	if !errors.Is(err, neuron.ErrLoadFailed) || !errors.As(err, &le) || !strings.HasPrefix(le.Reason, "start:") {
		t.Fatalf("Load error = %v, want a *LoadError from the start", err)
	}
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load error %v does not wrap the exec error", err)
	}
	if errors.Is(err, neuron.ErrCannotStart) {
		t.Errorf("Load error %v is ErrCannotStart", err)
	}
}

func TestConcurrentLoadsShareOneEngine(t *testing.T) {
	t.Parallel()
	starts := filepath.Join(t.TempDir(), "starts")
	h := newHarness(t, []neuron.EngineConfig{shellEngine("sim", "echo start >> "+starts+"; "+simCmd("--load-time 300ms"))})
	const n = 8
	var wg sync.WaitGroup
	infos := make([]neuron.ModelInfo, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { infos[i], errs[i] = h.Load(t.Context(), neuron.LoadSpec{ModelID: "m"}) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Load %d: %v", i, errs[i])
		}
		if diff := cmp.Diff(infos[i], infos[0]); diff != "" {
			t.Errorf("Load %d info (-got +want):\n%s", i, diff)
		}
	}
	if got := countLines(t, starts); got != 1 {
		t.Errorf("%d engines started for %d concurrent loads, want 1", got, n)
	}

	// Loading a loaded id returns its info without a second engine.
	again, err := h.Load(t.Context(), neuron.LoadSpec{ModelID: "m", Devices: []int{3}})
	if err != nil {
		t.Fatalf("Load of a loaded model: %v", err)
	}
	if diff := cmp.Diff(again, infos[0]); diff != "" {
		t.Errorf("Load of a loaded model (-got +want):\n%s", diff)
	}
	if got := countLines(t, starts); got != 1 {
		t.Errorf("%d engines started after loading a loaded model, want 1", got)
	}
}

func TestLoadCancelledWaitKeepsLoading(t *testing.T) {
	t.Parallel()
	starts := filepath.Join(t.TempDir(), "starts")
	h := newHarness(t, []neuron.EngineConfig{shellEngine("sim", "echo start >> "+starts+"; "+simCmd("--load-time 500ms"))})

	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, err := h.Load(ctx, neuron.LoadSpec{ModelID: "m"})
		errc <- err
	}()
	waitFor(t, "the load to start", func() bool {
		mi, ok := info(h, "m")
		return ok && mi.Status == neuron.StatusLoading
	})
	// Models and Endpoint answer at once during the load.
	if _, err := h.Endpoint("m"); !errors.Is(err, neuron.ErrNotReady) {
		t.Errorf("Endpoint while loading: %v, want ErrNotReady", err)
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Load error = %v, want context.Canceled", err)
	}
	mi, err := h.Load(t.Context(), neuron.LoadSpec{ModelID: "m"})
	if err != nil || mi.Status != neuron.StatusLoaded {
		t.Fatalf("Load after a cancelled Load = %v, %v; want loaded", mi.Status, err)
	}
	if got := countLines(t, starts); got != 1 {
		t.Errorf("%d engines started, want 1", got)
	}

	// A Load whose ctx has already ended starts nothing.
	done, stop := context.WithCancel(t.Context())
	stop()
	if _, err := h.Load(done, neuron.LoadSpec{ModelID: "other"}); !errors.Is(err, context.Canceled) {
		t.Errorf("Load with a cancelled ctx: %v, want context.Canceled", err)
	}
	if _, ok := info(h, "other"); ok {
		t.Error("a Load with a cancelled ctx registered its model")
	}
}

func TestUnloadDuringLoad(t *testing.T) {
	t.Parallel()
	h := newHarness(t, []neuron.EngineConfig{shellEngine("sim", `echo "pid=$$"; `+simCmd("--load-time 1m"))})
	errc := make(chan error, 1)
	go func() {
		_, err := h.Load(t.Context(), neuron.LoadSpec{ModelID: "m"})
		errc <- err
	}()
	var pid int
	waitFor(t, "the engine to start", func() bool {
		logs, err := h.Logs("m")
		if err != nil || len(logs) == 0 {
			return false
		}
		pid = pidFrom(t, logs, "pid")
		return true
	})
	if err := h.Unload(t.Context(), "m"); err != nil {
		t.Fatalf("Unload: %v", err)
	}
	err := <-errc
	var le *engine.LoadError
	if !errors.As(err, &le) || le.Reason != "unloaded while loading" {
		t.Errorf("Load error = %v, want unloaded while loading", err)
	}
	if alive(pid) {
		t.Errorf("engine %d survived Unload", pid)
	}
	if got := h.Models(); len(got) != 0 {
		t.Errorf("Models = %v, want none", got)
	}
}

func TestUnknownEngine(t *testing.T) {
	t.Parallel()
	h := newHarness(t, []neuron.EngineConfig{simEngine("a"), simEngine("b")}, engine.WithDefaultEngine("b"))
	if _, err := h.Load(t.Context(), neuron.LoadSpec{ModelID: "m", Engine: "nope"}); !errors.Is(err, neuron.ErrUnknownEngine) {
		t.Errorf("Load on an unknown engine: %v, want ErrUnknownEngine", err)
	}
	if got := h.Models(); len(got) != 0 {
		t.Errorf("Models = %v, want none", got)
	}
	mi, err := h.Load(t.Context(), neuron.LoadSpec{ModelID: "m"})
	if err != nil || mi.Engine != "b" {
		t.Errorf("Load on the default engine = %q, %v; want engine b", mi.Engine, err)
	}
}

func TestPlaceholdersAndDevices(t *testing.T) {
	t.Parallel()
	script := `echo "model={model} id={id} gpus=[{gpus}] ctx={context} host={host} cvd=[$CUDA_VISIBLE_DEVICES] order=$CUDA_DEVICE_ORDER extra=$EXTRA"; ` + simCmd("")
	withEnv := shellEngine("env", script)
	withEnv.Env = map[string]string{"EXTRA": "{id}@{port}", "CUDA_DEVICE_ORDER": "FASTEST_FIRST"}
	h := newHarness(t, []neuron.EngineConfig{shellEngine("plain", script), withEnv})
	tests := []struct {
		name string
		in   neuron.LoadSpec
		want string // with PORT for the engine's port
	}{
		{
			name: "devices and source",
			in:   neuron.LoadSpec{ModelID: "a", Engine: "plain", Source: "org/weights", Devices: []int{0, 2}, Context: 4096},
			want: "model=org/weights id=a gpus=[0,2] ctx=4096 host=127.0.0.1 cvd=[0,2] order=PCI_BUS_ID extra=",
		},
		{
			name: "no devices hides every GPU",
			in:   neuron.LoadSpec{ModelID: "b", Engine: "plain"},
			want: "model=b id=b gpus=[] ctx=0 host=127.0.0.1 cvd=[] order=PCI_BUS_ID extra=",
		},
		{
			name: "template env",
			in:   neuron.LoadSpec{ModelID: "c", Engine: "env", Devices: []int{1}},
			want: "model=c id=c gpus=[1] ctx=0 host=127.0.0.1 cvd=[1] order=FASTEST_FIRST extra=c@PORT",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := h.Load(t.Context(), tt.in); err != nil {
				t.Fatalf("Load: %v", err)
			}
			u, err := h.Endpoint(tt.in.ModelID)
			if err != nil {
				t.Fatalf("Endpoint: %v", err)
			}
			logs, err := h.Logs(tt.in.ModelID)
			if err != nil || len(logs) == 0 {
				t.Fatalf("Logs = %q, %v", logs, err)
			}
			if want := strings.ReplaceAll(tt.want, "PORT", u.Port()); logs[0] != want {
				t.Errorf("engine saw\n%q\nwant\n%q", logs[0], want)
			}
		})
	}
}

func TestLogsBounded(t *testing.T) {
	t.Parallel()
	h := newHarness(t,
		[]neuron.EngineConfig{shellEngine("sim", `i=1; while [ $i -le 50 ]; do echo "line $i"; i=$((i+1)); done; `+simCmd(""))},
		engine.WithLogLines(5))
	if _, err := h.Load(t.Context(), neuron.LoadSpec{ModelID: "m"}); err != nil {
		t.Fatalf("Load: %v", err)
	}
	logs, err := h.Logs("m")
	if err != nil {
		t.Fatal(err)
	}
	if len(logs) != 5 {
		t.Fatalf("Logs kept %d lines, want 5: %q", len(logs), logs)
	}
	last := 0
	for _, l := range logs {
		if n, ok := strings.CutPrefix(l, "line "); ok {
			k, _ := strconv.Atoi(n)
			if k <= 45 || k <= last {
				t.Errorf("Logs = %q: line %d should have been dropped or is out of order", logs, k)
			}
			last = k
		}
	}
}

func TestCloseStopsEverything(t *testing.T) {
	t.Parallel()
	h, err := engine.New([]neuron.EngineConfig{shellEngine("sim", `echo "pid=$$"; `+simCmd(""))})
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, id := range []string{"b", "a"} {
		if _, err := h.Load(t.Context(), neuron.LoadSpec{ModelID: id}); err != nil {
			t.Fatalf("Load %s: %v", id, err)
		}
		logs, _ := h.Logs(id)
		pids = append(pids, pidFrom(t, logs, "pid"))
	}
	var ids []string
	for _, m := range h.Models() {
		ids = append(ids, m.ID)
	}
	if diff := cmp.Diff(ids, []string{"a", "b"}); diff != "" {
		t.Errorf("Models ids (-got +want):\n%s", diff)
	}
	if err := h.Close(t.Context()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("engine %d survived Close", pid)
		}
	}
	if got := h.Models(); len(got) != 0 {
		t.Errorf("Models after Close = %v, want none", got)
	}
	if _, err := h.Load(t.Context(), neuron.LoadSpec{ModelID: "a"}); !errors.Is(err, neuron.ErrShuttingDown) {
		t.Errorf("Load after Close: %v, want ErrShuttingDown", err)
	}
	if err := h.Close(t.Context()); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
