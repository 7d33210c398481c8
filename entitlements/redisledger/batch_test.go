package redisledger

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// The batcher's own tests: they hold the first pipeline on the wire (a hook
// that waits) so that what queues behind it is known exactly.

// holdHook records the size of every pipeline of scripts and holds the
// first one until release is closed, after closing entered. (The client's
// own pipelines, such as its connection handshake, are let through.)
type holdHook struct {
	entered, release chan struct{}
	mu               sync.Mutex
	sizes            []int
}

func newHoldHook() *holdHook {
	return &holdHook{entered: make(chan struct{}), release: make(chan struct{})}
}

func (h *holdHook) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessHook sees a call sent alone, as a pipeline of one.
func (h *holdHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if strings.HasPrefix(cmd.Name(), "eval") {
			h.hold(1)
		}
		return next(ctx, cmd)
	}
}

func (h *holdHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if strings.HasPrefix(cmds[0].Name(), "eval") {
			h.hold(len(cmds))
		}
		return next(ctx, cmds)
	}
}

// hold records a pipeline of n calls and holds it if it is the first.
func (h *holdHook) hold(n int) {
	h.mu.Lock()
	h.sizes = append(h.sizes, n)
	first := len(h.sizes) == 1
	h.mu.Unlock()
	if first {
		close(h.entered)
		<-h.release
	}
}

func (h *holdHook) pipelines() []int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.sizes)
}

// newTestBatcher returns a batcher of at most max pipelines over a client
// of a private redis-server that knows the test scripts, with h installed.
func newTestBatcher(t *testing.T, max int, h *holdHook) *batcher {
	t.Helper()
	s := redistest.Start(t)
	c := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	for _, sc := range []*redis.Script{echo, incr} {
		if err := sc.Load(t.Context(), c).Err(); err != nil {
			t.Fatal(err)
		}
	}
	c.AddHook(h)
	return &batcher{client: c, max: max}
}

// queuedCtx is a ctx that reports on queued when a call made with it has
// queued: a queued call's first use of its ctx is the Done of its wait
// (run only keeps the ctx of a call until then, and Reserve only asks its
// Err), while a call that is sent at once never waits. The calls queue
// without blocking on anything the test controls, so this is the way to
// know.
type queuedCtx struct {
	context.Context
	once   sync.Once
	queued chan<- struct{}
}

func (c *queuedCtx) Done() <-chan struct{} {
	c.once.Do(func() { c.queued <- struct{}{} })
	return c.Context.Done()
}

// notifyQueued returns a channel for waitQueued and a function that makes
// a ctx of parent that reports on it when its call queues. The ctx must
// be the call's own, not the parent of another ctx: context.WithCancel
// asks its parent's Done at once.
func notifyQueued() (chan struct{}, func(parent context.Context) context.Context) {
	ch := make(chan struct{}, 64)
	return ch, func(parent context.Context) context.Context {
		return &queuedCtx{Context: parent, queued: ch}
	}
}

// waitQueued waits until n more calls have queued.
func waitQueued(t *testing.T, queued chan struct{}, n int) {
	t.Helper()
	for i := range n {
		select {
		case <-queued:
		case <-t.Context().Done():
			t.Fatalf("%d calls queued, want %d", i, n)
		}
	}
}

var (
	echo = redis.NewScript(`return ARGV[1]`)
	incr = redis.NewScript(`return redis.call('INCR', KEYS[1])`)
)

// TestBatcherSendsQueuedCallsAsOnePipeline: calls made while the only
// pipeline is in flight go together as the next one, and each caller gets
// its own reply.
func TestBatcherSendsQueuedCallsAsOnePipeline(t *testing.T) {
	h := newHoldHook()
	b := newTestBatcher(t, 1, h)
	notified, queuing := notifyQueued()
	const queued = 10
	got := make([]string, queued+1)
	errs := make([]error, queued+1)
	var wg sync.WaitGroup
	call := func(ctx context.Context, i int) {
		got[i], errs[i] = b.run(ctx, echo, []string{"k"}, strconv.Itoa(i)).Text()
	}
	wg.Go(func() { call(t.Context(), 0) })
	<-h.entered
	for i := 1; i <= queued; i++ {
		wg.Go(func() { call(queuing(t.Context()), i) })
	}
	waitQueued(t, notified, queued)
	close(h.release)
	wg.Wait()
	for i := range got {
		if errs[i] != nil || got[i] != strconv.Itoa(i) {
			t.Errorf("call %d = %q, %v; want %q", i, got[i], errs[i], strconv.Itoa(i))
		}
	}
	if p := h.pipelines(); !slices.Equal(p, []int{1, queued}) {
		t.Errorf("pipelines of %v calls, want [1 %d]", p, queued)
	}
	if b.busy != 0 || len(b.queue) != 0 {
		t.Errorf("after the calls: %d in flight, %d queued; want 0, 0", b.busy, len(b.queue))
	}
}

// TestBatcherQueuedCallLeavesOnCancel: a queued caller whose ctx ends
// returns at once, while the pipeline ahead of it is still held, and its
// script never runs.
func TestBatcherQueuedCallLeavesOnCancel(t *testing.T) {
	h := newHoldHook()
	b := newTestBatcher(t, 1, h)
	notified, queuing := notifyQueued()
	var wg sync.WaitGroup
	wg.Go(func() { _ = b.run(t.Context(), incr, []string{"n"}).Err() })
	<-h.entered

	ctx, cancel := context.WithCancel(t.Context())
	left := make(chan error, 1)
	go func() { left <- b.run(queuing(ctx), incr, []string{"n"}).Err() }()
	wg.Go(func() { _ = b.run(queuing(t.Context()), incr, []string{"n"}).Err() })
	waitQueued(t, notified, 2)
	cancel()
	if err := <-left; !errors.Is(err, context.Canceled) || !errors.Is(err, errUnsent) {
		t.Errorf("cancelled call = %v, want context.Canceled and errUnsent", err)
	}
	close(h.release)
	wg.Wait()
	n, err := b.client.Get(t.Context(), "n").Int()
	if err != nil || n != 2 {
		t.Errorf("n = %d, %v after two calls and one cancelled, want 2", n, err)
	}
	if p := h.pipelines(); !slices.Equal(p, []int{1, 1}) {
		t.Errorf("pipelines of %v calls, want [1 1]", p)
	}
}

// TestBatcherCancelledLeaderStillSends: a caller handed the lead after its
// ctx ended returns ctx.Err() at once, and the pipeline it was handed is
// still sent for the others in it.
func TestBatcherCancelledLeaderStillSends(t *testing.T) {
	h := newHoldHook()
	close(h.release)
	b := newTestBatcher(t, 1, h)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	c := &call{script: echo, keys: []string{"k"}, args: []any{"c"}, ctx: ctx, wake: make(chan struct{}, 1)}
	other := &call{script: echo, keys: []string{"k"}, args: []any{"other"}, ctx: t.Context(), wake: make(chan struct{}, 1)}
	// The state a pipeline's sender leaves when it hands on the queue.
	b.mu.Lock()
	b.busy = 1
	other.state = taken
	c.state, c.next = lead, []*call{c, other}
	b.mu.Unlock()
	c.signal()

	if err := b.await(c).Err(); !errors.Is(err, context.Canceled) || !errors.Is(err, errUnsent) {
		t.Errorf("cancelled leader = %v, want context.Canceled and errUnsent", err)
	}
	<-other.wake
	b.mu.Lock()
	st, busy := other.state, b.busy
	b.mu.Unlock()
	if got, err := other.cmd.Text(); st != done || err != nil || got != "other" {
		t.Errorf("the other call = %v: %q, %v; want done: \"other\"", st, got, err)
	}
	if busy != 0 {
		t.Errorf("%d pipelines in flight after the last, want 0", busy)
	}
	if p := h.pipelines(); !slices.Equal(p, []int{1}) {
		t.Errorf("pipelines of %v calls, want [1]: the other call alone", p)
	}
}

// panicHook panics in the first script call it sees.
type panicHook struct{ fired bool }

func (h *panicHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *panicHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if strings.HasPrefix(cmd.Name(), "eval") && !h.fired {
			h.fired = true
			panic("hook")
		}
		return next(ctx, cmd)
	}
}

func (h *panicHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// TestBatcherSurvivesPanic: a panic while a pipeline is sent (a client
// hook's) reaches its sender, and the batcher still serves the next call.
func TestBatcherSurvivesPanic(t *testing.T) {
	h := newHoldHook()
	close(h.release)
	b := newTestBatcher(t, 1, h)
	b.client.AddHook(&panicHook{})
	func() {
		defer func() {
			if recover() == nil {
				t.Error("the hook's panic did not reach the caller")
			}
		}()
		_ = b.run(t.Context(), echo, []string{"k"}, "a")
	}()
	if got, err := b.run(t.Context(), echo, []string{"k"}, "b").Text(); err != nil || got != "b" {
		t.Errorf("call after the panic = %q, %v; want \"b\"", got, err)
	}
}

// TestReserveLeavingQueueSendsNothing: a Reserve that gives up while queued
// returns ctx.Err() and sends nothing, not even the release that follows a
// Reserve that may have run.
func TestReserveLeavingQueueSendsNothing(t *testing.T) {
	s := redistest.Start(t)
	c := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	l, err := New(c, WithPipelines(1))
	if err != nil {
		t.Fatal(err)
	}
	p := entitlements.Principal{AccountID: "acme", KeyID: "acme"}
	key := entitlements.Key{Digest: entitlements.KeyDigest("sk"), Principal: p, Budget: entitlements.Budget{HardCap: entitlements.Cap(100)}}
	if err := l.AddKey(t.Context(), key); err != nil {
		t.Fatal(err)
	}
	for _, sc := range []*redis.Script{l.sc.reserve, l.sc.finish, l.sc.snapshot} {
		if err := sc.Load(t.Context(), c).Err(); err != nil {
			t.Fatal(err)
		}
	}
	h := newHoldHook()
	c.AddHook(h)
	queued, queuing := notifyQueued()

	var wg sync.WaitGroup
	wg.Go(func() {
		if _, err := l.Reserve(t.Context(), p, 1); err != nil {
			t.Errorf("first Reserve: %v", err)
		}
	})
	<-h.entered
	ctx, cancel := context.WithCancel(t.Context())
	left := make(chan error, 1)
	go func() {
		_, err := l.Reserve(queuing(ctx), p, 2)
		left <- err
	}()
	waitQueued(t, queued, 1)
	cancel()
	close(h.release) // a release sent by the cancelled Reserve would now go
	if err := <-left; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Reserve = %v, want context.Canceled", err)
	}
	wg.Wait()
	if got := h.pipelines(); !slices.Equal(got, []int{1}) {
		t.Errorf("pipelines of %v calls, want [1]: the first Reserve alone", got)
	}
	snap, err := l.Snapshot(t.Context(), p)
	if err != nil || snap.Reserved != 1 {
		t.Errorf("Snapshot = %+v, %v; want 1 reserved", snap, err)
	}
}
