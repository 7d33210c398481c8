// Package proctest is what the suites that run real daemon processes
// (internal/faulttest, internal/adversarial) share: building the neuron
// and helexa-sim binaries once, finding processes in /proc, loopback
// addresses, polling and a log buffer. It is for tests only, and Linux
// only (it reads /proc).
package proctest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// Binaries builds cmd/neuron and helexa-sim once per test binary, without
// the race detector (they are the system under test, not the test), into
// a temporary folder named after Prefix. The zero value with Prefix set is
// ready to use.
type Binaries struct {
	// Prefix names the temporary folder ("helexa-faulttest-").
	Prefix string

	once sync.Once
	err  error
	// Dir, Neuron and Sim are set by Build.
	Dir, Neuron, Sim string
}

// Build builds the binaries on its first call and fails t if that failed.
func (b *Binaries) Build(t *testing.T) {
	t.Helper()
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", b.Prefix)
		if err != nil {
			b.err = err
			return
		}
		b.Dir = dir
		b.Neuron, b.Sim = filepath.Join(dir, "neuron"), filepath.Join(dir, "helexa-sim")
		if b.err = build(b.Neuron, "github.com/helexa-ai/helexa-go/cmd/neuron"); b.err != nil {
			return
		}
		b.err = build(b.Sim, "github.com/helexa-ai/helexa-go/neuron/sim/cmd/helexa-sim")
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
}

// Main runs the tests of m (from TestMain) and exits: after passing tests,
// a process of the binaries left running or a goroutine leaked fails the
// run. The binaries are removed.
func (b *Binaries) Main(m *testing.M, suite string) {
	code := m.Run()
	if b.Dir == "" {
		os.Exit(code)
	}
	if code == 0 {
		if left := ProcessesFrom(b.Dir); len(left) > 0 {
			fmt.Fprintf(os.Stderr, "%s: processes of the suite left running: %v\n", suite, left)
			code = 1
		}
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "%s: goroutines leaked: %v\n", suite, err)
			code = 1
		}
	}
	_ = os.RemoveAll(b.Dir)
	os.Exit(code)
}

func build(out, pkg string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("the go command is needed to build %s: %w", pkg, err)
	}
	cmd := exec.Command(goBin, "build", "-o", out, pkg)
	cmd.Env = os.Environ()
	if os.Getenv("CGO_CFLAGS") == "" {
		cmd.Env = append(cmd.Env, "CGO_CFLAGS=-Wno-deprecated-declarations")
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return nil
}

// FreeAddr returns a loopback address with a port free a moment ago.
func FreeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// QuoteAll quotes each string and joins them with commas: a TOML array's
// elements.
func QuoteAll(s []string) string {
	q := make([]string, len(s))
	for i, v := range s {
		q[i] = strconv.Quote(v)
	}
	return strings.Join(q, ", ")
}

// ChildrenOf returns the pids of the live processes whose parent is pid.
func ChildrenOf(pid int) []int {
	var out []int
	for _, p := range procs() {
		if p.ppid == pid && p.state != 'Z' {
			out = append(out, p.pid)
		}
	}
	return out
}

// ProcessesFrom returns the live processes whose command lies in dir, as
// "pid path".
func ProcessesFrom(dir string) []string {
	var out []string
	for _, p := range procs() {
		if p.state == 'Z' {
			continue
		}
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", p.pid))
		if err == nil && strings.HasPrefix(exe, dir+string(os.PathSeparator)) {
			out = append(out, fmt.Sprintf("%d %s", p.pid, exe))
		}
	}
	return out
}

// ProcessesNaming returns the live processes whose command line names a
// path in dir.
func ProcessesNaming(dir string) []int {
	var out []int
	for _, p := range procs() {
		if p.state == 'Z' {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.pid))
		if err == nil && strings.Contains(string(b), dir+string(os.PathSeparator)) {
			out = append(out, p.pid)
		}
	}
	return out
}

// Alive reports whether pid is a process that has not exited (a zombie
// has).
func Alive(pid int) bool {
	for _, p := range procs() {
		if p.pid == pid {
			return p.state != 'Z'
		}
	}
	return false
}

// Stop sends SIGSTOP to pid and returns once every thread of the process
// has stopped. kill returns before they have: a thread running on another
// core, or not yet scheduled on a busy machine, goes on for a while, and a
// test that expects the process to answer nothing must not start before.
func Stop(t *testing.T, pid int) {
	t.Helper()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	Eventually(t, 15*time.Second, fmt.Sprintf("every thread of process %d stopped", pid), func() bool {
		return threadsStopped(pid)
	})
}

// threadsStopped reports whether every thread of pid is stopped (state T
// in /proc/PID/task/TID/stat).
func threadsStopped(pid int) bool {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	tasks, err := os.ReadDir(dir)
	if err != nil || len(tasks) == 0 {
		return false
	}
	for _, task := range tasks {
		b, err := os.ReadFile(filepath.Join(dir, task.Name(), "stat"))
		if err != nil {
			return false
		}
		i := bytes.LastIndexByte(b, ')')
		if i < 0 || i+2 >= len(b) || b[i+2] != 'T' {
			return false
		}
	}
	return true
}

type proc struct {
	pid, ppid int
	state     byte
}

// procs lists the processes of the machine from /proc.
func procs() []proc {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []proc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		out = append(out, proc{pid: pid, ppid: ppid, state: f[0][0]})
	}
	return out
}

// Eventually polls cond until it holds, failing the test after within.
func Eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// LockedBuffer is a bytes.Buffer safe for concurrent use: a process's or
// a logger's output.
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Daemon is a test binary run again as one of the project's daemons (its
// TestDaemon runs main with the arguments of an environment variable),
// and the output it writes.
type Daemon struct {
	// Cmd is the running process.
	Cmd *exec.Cmd

	done chan struct{}
	err  error
	out  LockedBuffer
}

// StartDaemon runs the test binary with -test.run=^TestDaemon$, args
// passed in the environment variable env (joined by \x1f), in the working
// directory dir ("": the test's). The process is killed when the test
// ends.
func StartDaemon(t *testing.T, env, dir string, args ...string) *Daemon {
	t.Helper()
	d := &Daemon{done: make(chan struct{})}
	d.Cmd = exec.Command(os.Args[0], "-test.run=^TestDaemon$")
	d.Cmd.Dir = dir
	d.Cmd.Env = append(os.Environ(), env+"="+strings.Join(args, "\x1f"))
	d.Cmd.Stdout, d.Cmd.Stderr = &d.out, &d.out
	if err := d.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		d.err = d.Cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() {
		_ = d.Cmd.Process.Kill()
		<-d.done
	})
	return d
}

// String returns the daemon's output so far.
func (d *Daemon) String() string { return d.out.String() }

// Wait waits for output matching re and returns its submatches; the test
// fails when the daemon exits first or 30 s pass.
func (d *Daemon) Wait(t *testing.T, re *regexp.Regexp) []string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m := re.FindStringSubmatch(d.String()); m != nil {
			return m
		}
		select {
		case <-d.done:
			t.Fatalf("the daemon exited (%v) before %q:\n%s", d.err, re, d)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the daemon's output:\n%s", re, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Exit waits up to 30 s for the daemon to exit and returns its exit
// error.
func (d *Daemon) Exit(t *testing.T) error {
	t.Helper()
	select {
	case <-d.done:
		return d.err
	case <-time.After(30 * time.Second):
		return fmt.Errorf("still running 30 s later")
	}
}
