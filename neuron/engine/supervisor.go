package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/helexa-ai/helexa-go/neuron"
)

const (
	// bindTries bounds the starts of one load when the picked port was
	// taken before the engine could bind it.
	bindTries = 3
	// probeTimeout bounds one ready probe during a load; liveness probes
	// have the template's own timeout.
	probeTimeout = 2 * time.Second
	// outputGrace is how long the output of an exited engine may take to
	// drain (a process that left the group may hold the pipe open).
	outputGrace = 2 * time.Second
)

// supervisor is the goroutine that owns one model's engine process: it
// starts it, waits on it, probes it, restarts it after a crash and stops it
// on request. Only its goroutine touches its fields.
type supervisor struct {
	h       *Harness
	m       *model
	settled bool // m.ready is closed
}

// result says how one engine process ended.
type result struct {
	pid      int
	ready    bool      // it answered its ready probe
	readyAt  time.Time // when, if ready
	stopped  bool      // it ended because a stop was asked for
	timedOut bool      // it missed its start timeout
	hung     bool      // it was killed for failing its liveness probes
	bindRace bool      // it exited during load because its port was taken
	reason   string    // "exit status 3", "not ready after 5s", ...
	code     int       // exit code, -1 if none
	err      error
	output   []string // its last lines
}

func (s *supervisor) run() {
	defer close(s.m.done)
	h, m := s.h, s.m
	if m.spec.Context == 0 && m.tmpl.uses("context") {
		h.log.Warn("engine context unset: the engine keeps its default (llama-server and vLLM: the model's trained context, which may not fit its VRAM); set limit.context in the catalogue",
			"model", m.id, "engine", m.tmpl.name)
	}
	delay := h.backoffMin
	for {
		res := s.start()
		if res.stopped {
			var err error
			if !s.settled {
				res.reason = "unloaded while loading"
				err = s.loadError(res)
			}
			s.finish(err)
			return
		}
		if !s.settled {
			err := s.loadError(res)
			h.log.Warn("engine load failed", "model", m.id, "engine", m.tmpl.name, "pid", res.pid, "reason", res.reason)
			s.finish(err)
			return
		}

		// A crash, a hung engine, or a restart that did not become ready.
		now := h.clock.Now()
		if res.ready && now.Sub(res.readyAt) >= h.backoffMax {
			delay = h.backoffMin
		}
		kind := neuron.FailureCrash
		if res.hung {
			kind = neuron.FailureUnresponsive
		}
		failures := 0
		s.update(func(i *neuron.ModelInfo) {
			i.Status = neuron.StatusFailed
			i.LastError = res.reason + outputSuffix(res.output)
			i.LoadedAt = time.Time{}
			i.LoadingSince = now
			i.Failures++
			failures = i.Failures
			i.LastFailure = kind
			i.LastFailureAt = now
			i.LastFailureReason = res.reason
			i.LivenessFailures = 0
		})
		msg := "engine crashed"
		if res.hung {
			msg = "engine unresponsive, killed"
		}
		h.log.Warn(msg, "model", m.id, "engine", m.tmpl.name, "pid", res.pid, "status", res.reason,
			"failures", failures, "restart_in", delay)
		t := h.clock.NewTimer(delay)
		select {
		case <-m.stop:
			t.Stop()
			s.finish(nil)
			return
		case <-t.C():
		}
		delay = min(2*delay, h.backoffMax)
		restarts := 0
		s.update(func(i *neuron.ModelInfo) {
			i.Status = neuron.StatusRecovering
			i.Restarts++
			restarts = i.Restarts
			i.LoadingSince = h.clock.Now()
		})
		h.log.Info("engine restarting", "model", m.id, "engine", m.tmpl.name, "restarts", restarts)
	}
}

// update changes the model's info under the lock; an unloading model keeps
// its status.
func (s *supervisor) update(f func(*neuron.ModelInfo)) {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	f(&s.m.info)
	if s.m.stopping {
		s.m.info.Status = neuron.StatusUnloading
	}
}

// finish forgets the model and settles a pending first load with err.
func (s *supervisor) finish(err error) {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	if s.h.models[s.m.id] == s.m {
		delete(s.h.models, s.m.id)
	}
	if !s.settled {
		s.settled = true
		s.m.loadErr = err
		close(s.m.ready)
	}
}

func (s *supervisor) loadError(res result) error {
	return &LoadError{
		ModelID:  s.m.id,
		Engine:   s.m.tmpl.name,
		Reason:   res.reason,
		ExitCode: res.code,
		Output:   res.output,
		Err:      res.err,
	}
}

// start runs one engine process to its end, retrying on a fresh port when
// the picked one was taken before the engine could bind it.
func (s *supervisor) start() result {
	for try := 1; ; try++ {
		res := s.runOnce()
		if !res.bindRace || try == bindTries {
			return res
		}
		s.h.log.Warn("engine port taken, retrying", "model", s.m.id, "engine", s.m.tmpl.name, "pid", res.pid)
	}
}

// runOnce starts one engine process and returns when it has exited.
func (s *supervisor) runOnce() result {
	h, m, t := s.h, s.m, s.m.tmpl
	port, err := freePort(h.host)
	if err != nil {
		return result{reason: "pick a port: " + err.Error(), code: -1, err: err}
	}
	model := m.spec.Source
	if model == "" {
		model = m.id
	}
	argv, env := t.command(vars{
		model:   model,
		id:      m.id,
		host:    h.host,
		gpus:    joinDevices(m.spec.Devices),
		port:    port,
		context: m.spec.Context,
	}, m.spec.Devices, m.spec.EngineArgs)

	h.log.Info("engine command", "model", m.id, "engine", t.name, "port", port,
		"argv", redactArgv(argv), "env", redactEnv(env))
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = sysProcAttr()
	pr, pw, err := os.Pipe()
	if err != nil {
		return result{reason: "output pipe: " + err.Error(), code: -1, err: err}
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	mark := m.logs.mark()
	err = cmd.Start()
	pw.Close()
	if err != nil {
		pr.Close()
		return result{reason: "start: " + err.Error(), code: -1, err: err}
	}
	pid := cmd.Process.Pid
	h.mu.Lock()
	m.port = port
	h.mu.Unlock()
	h.log.Info("engine started", "model", m.id, "engine", t.name, "pid", pid, "port", port)

	outDone := make(chan struct{})
	go func() {
		defer close(outDone)
		m.logs.readFrom(pr)
	}()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	res := s.watch(cmd.Process, port, exited)
	res.pid = pid

	// Whatever the engine spawned dies with it, then its output drains
	// (in real time: this waits on the operating system, not on a clock).
	if err := kill(cmd.Process); err != nil {
		h.log.Warn("engine group kill failed", "model", m.id, "pid", pid, "err", err)
	}
	grace := time.NewTimer(outputGrace)
	select {
	case <-outDone:
	case <-grace.C:
		pr.Close()
		<-outDone
	}
	grace.Stop()
	pr.Close()

	res.output = m.logs.since(mark, errorLines)
	if !res.ready && !res.stopped && !res.timedOut {
		res.bindRace = portTaken(h.host, port, res.output)
	}
	if res.stopped {
		h.log.Info("engine stopped", "model", m.id, "engine", t.name, "pid", pid, "status", res.reason)
	}
	return res
}

// watch probes the engine until it is ready and waits for it to exit, to
// be stopped, or to miss its start timeout. Once it is ready it keeps
// probing it every liveness interval: after the template's number of
// failed probes in a row the engine is marked failed and killed, and watch
// returns a hung result.
//
// The ready probes of a loading engine are paced in real time, the start
// timeout and the liveness probes by the harness's clock (WithClock).
func (s *supervisor) watch(p *os.Process, port int, exited <-chan error) result {
	h, m, t := s.h, s.m, s.m.tmpl
	started := h.clock.Now()
	probeURL := "http://" + net.JoinHostPort(h.dialHost, strconv.Itoa(port)) + t.readyPath

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	probes := make(chan error, 1)
	probing := false
	defer func() {
		if probing {
			cancel()
			<-probes
		}
	}()
	// One of the two tickers runs: poll while loading, live once ready.
	// tickC is the running one's channel, nil while a probe is out.
	poll := time.NewTicker(probeInterval)
	defer poll.Stop()
	liveC, stopLive := (<-chan time.Time)(nil), func() {}
	defer func() { stopLive() }()
	tickC := poll.C
	stall := h.clock.NewTimer(t.startTimeout)
	defer stall.Stop()
	stallC := stall.C()
	var readyAt time.Time
	failed := 0 // liveness probes failed in a row

	for {
		select {
		case err := <-exited:
			res := exitResult(err, readyAt)
			select {
			case <-m.stop:
				res.stopped = true
			default:
			}
			return res

		case <-m.stop:
			res := s.stop(p, exited)
			res.ready, res.readyAt = !readyAt.IsZero(), readyAt
			return res

		case <-tickC:
			tickC = nil
			probing = true
			timeout := probeTimeout
			if !readyAt.IsZero() {
				timeout = t.liveTimeout
			}
			go func() { probes <- h.probe(ctx, probeURL, timeout) }()

		case err := <-probes:
			probing = false
			switch {
			case readyAt.IsZero() && err != nil:
				// Still loading.
				tickC = poll.C
			case readyAt.IsZero():
				readyAt = h.clock.Now()
				poll.Stop()
				stall.Stop()
				stallC = nil
				liveC, stopLive = h.clock.NewTicker(t.liveInterval)
				tickC = liveC
				s.markReady(readyAt)
				h.log.Info("engine ready", "model", m.id, "engine", t.name, "pid", p.Pid, "port", port, "took", readyAt.Sub(started).Round(time.Millisecond))
			case err == nil:
				tickC = liveC
				if failed > 0 {
					failed = 0
					s.setLiveness(0)
					h.log.Info("engine answers its liveness probe again", "model", m.id, "engine", t.name, "pid", p.Pid)
				}
			default:
				tickC = liveC
				failed++
				s.setLiveness(failed)
				h.log.Warn("engine liveness probe failed", "model", m.id, "engine", t.name, "pid", p.Pid,
					"err", err, "failed", failed, "of", t.liveFailures)
				if failed < t.liveFailures {
					continue
				}
				reason := fmt.Sprintf("%d liveness probes failed in a row (the last: %v)", failed, err)
				// Failed before it is killed: requests its death cuts
				// short are told the model is not ready, and no new one
				// is sent to it.
				s.markFailed(reason)
				_ = kill(p)
				res := exitResult(<-exited, readyAt)
				res.reason, res.hung = reason, true
				select {
				case <-m.stop:
					res.stopped = true
				default:
				}
				return res
			}

		case <-stallC:
			_ = kill(p)
			res := exitResult(<-exited, readyAt)
			res.reason = fmt.Sprintf("not ready after %v", t.startTimeout)
			res.timedOut = true
			return res
		}
	}
}

// stop sends SIGTERM to the engine's group, SIGKILL after the stop timeout
// (on the harness's clock), and waits for the engine to exit.
func (s *supervisor) stop(p *os.Process, exited <-chan error) result {
	if err := terminate(p); err != nil {
		s.h.log.Warn("engine terminate failed", "model", s.m.id, "pid", p.Pid, "err", err)
	}
	t := s.h.clock.NewTimer(s.m.tmpl.stopTimeout)
	defer t.Stop()
	var err error
	select {
	case err = <-exited:
	case <-t.C():
		s.h.log.Warn("engine ignored SIGTERM, killing", "model", s.m.id, "pid", p.Pid, "stop_timeout", s.m.tmpl.stopTimeout)
		_ = kill(p)
		err = <-exited
	}
	res := exitResult(err, time.Time{})
	res.stopped = true
	return res
}

// markReady publishes that the engine answered its ready probe.
func (s *supervisor) markReady(at time.Time) {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	m := s.m
	if !m.stopping {
		m.info.Status = neuron.StatusLoaded
	}
	m.info.LoadedAt = at
	m.info.LoadingSince = time.Time{}
	if !s.settled {
		s.settled = true
		close(m.ready)
	}
}

// setLiveness publishes how many liveness probes have failed in a row.
func (s *supervisor) setLiveness(failed int) {
	s.update(func(i *neuron.ModelInfo) { i.LivenessFailures = failed })
}

// markFailed publishes that a loaded engine is being killed for reason.
func (s *supervisor) markFailed(reason string) {
	s.update(func(i *neuron.ModelInfo) {
		i.Status = neuron.StatusFailed
		i.LastError = reason
	})
}

// exitResult describes the end of a process from cmd.Wait's error.
func exitResult(err error, readyAt time.Time) result {
	res := result{ready: !readyAt.IsZero(), readyAt: readyAt, reason: "exit status 0", err: err}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.reason, res.code = ee.String(), ee.ExitCode()
	default:
		res.reason, res.code = err.Error(), -1
	}
	return res
}

// probe asks the engine's ready path once, within timeout: nil on 200,
// else an error that says what went wrong in a few words, without the
// engine's address.
func (h *Harness) probe(ctx context.Context, u string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := h.client.Do(req)
	switch {
	case err == nil:
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("timed out after %v", timeout)
	case errors.Is(err, syscall.ECONNREFUSED):
		return errors.New("connection refused")
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("connection closed")
	default:
		return errors.New("request failed")
	}
	_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("answered %d", resp.StatusCode)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("timed out after %v", timeout)
	}
	return nil
}

// freePort picks a free TCP port on host by listening on port 0.
func freePort(host string) (int, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// portTaken guesses whether an engine that exited during load lost its port
// to another process: it said so, or the port is still in use now.
func portTaken(host string, port int, output []string) bool {
	for _, l := range output {
		if strings.Contains(strings.ToLower(l), "address already in use") {
			return true
		}
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return errors.Is(err, syscall.EADDRINUSE)
	}
	ln.Close()
	return false
}
