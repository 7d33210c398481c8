//go:build unix

package engine_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/helexa-ai/helexa-go/internal/proctest"
	"github.com/helexa-ai/helexa-go/neuron"
	"github.com/helexa-ai/helexa-go/neuron/engine"
)

// liveEngine is a helexa-sim engine that prints its pid, probed for
// liveness every 100ms of the harness's clock with a 250ms timeout (in
// real time), taken for hung after failures probes in a row.
func liveEngine(failures int) neuron.EngineConfig {
	cfg := shellEngine("sim", `echo "pid=$$"; `+simCmd(""))
	cfg.LivenessInterval = neuron.Duration(100 * time.Millisecond)
	cfg.LivenessTimeout = neuron.Duration(250 * time.Millisecond)
	cfg.LivenessFailures = failures
	return cfg
}

// A stopped engine (SIGSTOP) is found by its liveness probes, marked
// failed, killed, and restarted as a crashed one is; the request it held
// fails when it is killed, not when its client gives up.
func TestHungEngineIsKilledAndRestarted(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	h, clk := newFakeHarness(t, []neuron.EngineConfig{liveEngine(3)}, engine.WithLogger(slog.New(rec)))
	loaded, err := h.Load(t.Context(), neuron.LoadSpec{ModelID: "m"})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	logs, _ := h.Logs("m")
	pid := pidFrom(t, logs, "pid")
	proctest.Stop(t, pid)
	// A request sent to the stopped engine waits for it.
	held := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_, err := chat(ctx, h, "m", 4, true)
		held <- err
	}()

	// One probe per liveness interval, each timing out.
	for i := 1; i <= 3; i++ {
		clk.Advance(100 * time.Millisecond)
		rec.await(t, "engine liveness probe failed", i)
		if mi, _ := info(h, "m"); i < 3 && (mi.Status != neuron.StatusLoaded || mi.LivenessFailures != i) {
			t.Errorf("after %d failed probes: status %s, liveness failures %d; want loaded, %d", i, mi.Status, mi.LivenessFailures, i)
		}
	}
	rec.await(t, "engine unresponsive, killed", 1)
	if mi, _ := info(h, "m"); mi.Status != neuron.StatusFailed {
		t.Errorf("status %s after the kill, want failed", mi.Status)
	}
	select {
	case err := <-held:
		if err == nil {
			t.Error("the request to the hung engine succeeded")
		}
		if errors.Is(err, context.DeadlineExceeded) {
			t.Error("the request to the hung engine waited for its own timeout")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the request to the hung engine still waits after it was killed")
	}
	if alive(pid) {
		// SIGKILL reaches a stopped process; give the reaper a moment.
		waitFor(t, "the hung engine to die", func() bool { return !alive(pid) })
	}
	mi, _ := info(h, "m")
	// Three probes, one each 100ms of the clock: found after 300ms.
	if got := mi.LastFailureAt.Sub(loaded.LoadedAt); got != 300*time.Millisecond {
		t.Errorf("the hung engine was found %v after it was loaded, want 300ms", got)
	}
	armed(t, clk, 1) // the restart backoff
	clk.Advance(50 * time.Millisecond)
	rec.await(t, "engine ready", 2)

	mi, _ = info(h, "m")
	if mi.Status != neuron.StatusLoaded || mi.Restarts != 1 {
		t.Errorf("after the restart: status %s, restarts %d; want loaded, 1", mi.Status, mi.Restarts)
	}
	if mi.Failures != 1 || mi.LastFailure != neuron.FailureUnresponsive || mi.LastFailureAt.IsZero() || mi.LivenessFailures != 0 {
		t.Errorf("failure fields = failures %d, last %q at %v, liveness %d; want 1, unresponsive, a time, 0",
			mi.Failures, mi.LastFailure, mi.LastFailureAt, mi.LivenessFailures)
	}
	if want := "3 liveness probes failed in a row (the last: timed out after 250ms)"; mi.LastFailureReason != want {
		t.Errorf("LastFailureReason = %q, want %q", mi.LastFailureReason, want)
	}
	if !strings.HasPrefix(mi.LastError, mi.LastFailureReason) {
		t.Errorf("LastError = %q, want it to start with the reason", mi.LastError)
	}
	if newPid := pidFrom(t, func() []string { l, _ := h.Logs("m"); return l }(), "pid"); newPid == pid {
		t.Errorf("restarted engine has the old pid %d", pid)
	}
	if diff := cmp.Diff(rec.values("engine liveness probe failed", "failed"), []string{"1", "2", "3"}); diff != "" {
		t.Errorf("liveness failures logged (-got +want):\n%s", diff)
	}
	if s := rec.find("engine unresponsive, killed"); !strings.Contains(s, "failures=1") {
		t.Errorf("kill log line = %q", s)
	}
}

// An engine that misses a few probes but answers again before the limit
// is counted, then forgiven: nothing is restarted.
func TestLivenessProbeRecovers(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	cfg := liveEngine(1000)
	// Time enough for the engine to answer at once after SIGCONT.
	cfg.LivenessTimeout = neuron.Duration(time.Second)
	h, clk := newFakeHarness(t, []neuron.EngineConfig{cfg}, engine.WithLogger(slog.New(rec)))
	if _, err := h.Load(t.Context(), neuron.LoadSpec{ModelID: "m"}); err != nil {
		t.Fatalf("Load: %v", err)
	}
	logs, _ := h.Logs("m")
	pid := pidFrom(t, logs, "pid")
	proctest.Stop(t, pid)
	// Should the test stop early, the engine must take Close's SIGTERM.
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
	clk.Advance(100 * time.Millisecond)
	rec.await(t, "engine liveness probe failed", 1)
	if mi, _ := info(h, "m"); mi.Status != neuron.StatusLoaded || mi.LivenessFailures != 1 {
		t.Errorf("after one failed probe: status %s, liveness failures %d; want loaded, 1", mi.Status, mi.LivenessFailures)
	}
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	clk.Advance(100 * time.Millisecond)
	rec.await(t, "engine answers its liveness probe again", 1)
	mi, _ := info(h, "m")
	if mi.Status != neuron.StatusLoaded || mi.LivenessFailures != 0 || mi.Failures != 0 || mi.Restarts != 0 || !alive(pid) {
		t.Errorf("after recovering: status %s, liveness failures %d, failures %d, restarts %d, alive %t; want loaded, 0, 0, 0, true",
			mi.Status, mi.LivenessFailures, mi.Failures, mi.Restarts, alive(pid))
	}
}

// A load that cannot start is refused by Check and by Load alike, before
// anything starts.
func TestCheckAndLoadRefuseWhatCannotStart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	model := filepath.Join(dir, "model.gguf")
	if err := os.WriteFile(model, []byte("gguf"), 0o600); err != nil {
		t.Fatal(err)
	}
	started := filepath.Join(dir, "started")
	withModel := shellEngine("files", "echo start >> "+started+"; "+simCmd("")+" # {model}")
	noModel := shellEngine("ids", "echo start >> "+started+"; "+simCmd(""))
	h := newHarness(t, []neuron.EngineConfig{
		withModel, noModel,
		{Name: "absent", Command: []string{"/nonexistent/engine", "--model", "{model}"}},
		{Name: "unknown-cmd", Command: []string{"helexa-no-such-engine", "--model", "{model}"}},
	})
	tests := []struct {
		name    string
		spec    neuron.LoadSpec
		wantErr error
		wantMsg string
	}{
		{name: "existing file", spec: neuron.LoadSpec{ModelID: "m", Engine: "files", Source: model}},
		{name: "repository name", spec: neuron.LoadSpec{ModelID: "m", Engine: "files", Source: "org/model"}},
		{name: "a path the template does not use", spec: neuron.LoadSpec{ModelID: "m", Engine: "ids", Source: "/nonexistent/model.gguf"}},
		{name: "missing absolute file", spec: neuron.LoadSpec{ModelID: "m", Engine: "files", Source: "/nonexistent/model.gguf"},
			wantErr: neuron.ErrCannotStart, wantMsg: `model "/nonexistent/model.gguf" does not exist`},
		{name: "missing relative file", spec: neuron.LoadSpec{ModelID: "m", Engine: "files", Source: "./nonexistent.gguf"},
			wantErr: neuron.ErrCannotStart, wantMsg: `model "./nonexistent.gguf" does not exist`},
		{name: "missing command", spec: neuron.LoadSpec{ModelID: "m", Engine: "absent"},
			wantErr: neuron.ErrCannotStart, wantMsg: `command "/nonexistent/engine" does not exist`},
		{name: "command not in PATH", spec: neuron.LoadSpec{ModelID: "m", Engine: "unknown-cmd"},
			wantErr: neuron.ErrCannotStart, wantMsg: `command "helexa-no-such-engine" is not found in PATH`},
		{name: "unknown engine", spec: neuron.LoadSpec{ModelID: "m", Engine: "nope"}, wantErr: neuron.ErrUnknownEngine},
		{name: "invalid spec", spec: neuron.LoadSpec{ModelID: "-m"}, wantErr: engine.ErrInvalidSpec},
	}
	for _, tt := range tests {
		err := h.Check(t.Context(), tt.spec)
		switch {
		case tt.wantErr == nil && err != nil:
			t.Errorf("%s: Check: %v", tt.name, err)
		case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
			t.Errorf("%s: Check: %v, want %v", tt.name, err, tt.wantErr)
		case !strings.Contains(errString(err), tt.wantMsg):
			t.Errorf("%s: Check: %v, want it to say %q", tt.name, err, tt.wantMsg)
		}
		if tt.wantErr == nil {
			continue
		}
		_, lerr := h.Load(t.Context(), tt.spec)
		if errString(lerr) != errString(err) {
			t.Errorf("%s: Load: %v, want Check's error %v", tt.name, lerr, err)
		}
		if errors.Is(tt.wantErr, neuron.ErrCannotStart) && !errors.Is(lerr, neuron.ErrLoadFailed) {
			t.Errorf("%s: Load: %v is not a neuron.ErrLoadFailed", tt.name, lerr)
		}
	}
	if got := h.Models(); len(got) != 0 {
		t.Errorf("Models = %v after refused loads, want none", got)
	}
	if n := countLines(t, started); n != 0 {
		t.Errorf("%d engines started by refused loads", n)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
