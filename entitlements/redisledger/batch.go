package redisledger

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// batcher runs the ledger's scripts, sending the calls of concurrent
// goroutines to Redis together as one pipeline: one write and one read for
// many calls instead of one of each per call. Both ends spend most of a
// small script's cost in system calls, so under load this is what decides
// the throughput.
//
// There is no background goroutine and no added wait. A call that finds
// fewer than max pipelines in flight sends at once (with whatever is queued),
// so an idle ledger has one round trip per call as before; a call that finds
// max in flight queues, and when a pipeline returns, its sender hands
// everything queued to the first waiter, which sends it as the next
// pipeline. A waiter whose ctx ends leaves the queue, its script is never
// sent, and its error says so (errUnsent); one already on the wire has its
// reply discarded, and its caller learns only that the call may have run
// (Reserve then releases what it may have taken; a Settle may be retried).
type batcher struct {
	client redis.UniversalClient
	max    int // pipelines in flight at most; 0: no batching

	mu    sync.Mutex
	busy  int     // pipelines in flight
	queue []*call // waiting for a pipeline, in arrival order
}

// call is one script run through a batcher.
type call struct {
	script *redis.Script
	keys   []string
	args   []any
	ctx    context.Context // the caller's; its deadline bounds the pipeline

	cmd   *redis.Cmd    // the reply, once state is done
	wake  chan struct{} // signalled (buffered) when state leaves queued
	state callState     // guarded by batcher.mu
	next  []*call       // the batch to send, when state is lead
}

type callState uint8

const (
	queued callState = iota // in batcher.queue
	taken                   // in a pipeline being sent
	lead                    // handed next to send
	done                    // cmd holds the reply
)

// run runs script with keys and args and returns its reply. When ctx ends
// before the reply is in, the reply's error is ctx.Err() (and the script may
// or may not have run); a queued call returns at once.
func (b *batcher) run(ctx context.Context, script *redis.Script, keys []string, args ...any) *redis.Cmd {
	if b.max <= 0 {
		return script.Run(ctx, b.client, keys, args...)
	}
	c := &call{script: script, keys: keys, args: args, ctx: ctx}
	b.mu.Lock()
	if b.busy < b.max {
		b.busy++
		batch := append(b.queue, c)
		b.queue = nil
		c.state = taken
		b.mu.Unlock()
		b.send(batch)
		return c.reply()
	}
	c.state = queued
	c.wake = make(chan struct{}, 1)
	b.queue = append(b.queue, c)
	b.mu.Unlock()
	return b.await(c)
}

// await waits until queued call c has its reply, sending the next pipeline
// when it is handed the lead, or until its ctx ends.
func (b *batcher) await(c *call) *redis.Cmd {
	ctx := c.ctx
	select {
	case <-c.wake:
	case <-ctx.Done():
	}
	b.mu.Lock()
	st, next := c.state, c.next
	if st == queued {
		b.queue = slices.DeleteFunc(b.queue, func(q *call) bool { return q == c })
	}
	b.mu.Unlock()
	switch st {
	case done:
		return c.reply()
	case lead:
		if ctx.Err() == nil {
			b.send(next)
			return c.reply()
		}
		// The others in next (c is first) wait for it; c leaves unsent.
		go b.send(next[1:])
		return unsent(ctx)
	case queued:
		return unsent(ctx)
	}
	return cancelled(ctx)
}

// reply is c's reply, or ctx.Err() when c's ctx ended before it came: a
// caller that gave up sees that it gave up, whether or not the script ran.
func (c *call) reply() *redis.Cmd {
	if c.ctx.Err() != nil {
		return cancelled(c.ctx)
	}
	return c.cmd
}

// errNoReply is the error of a call whose pipeline failed (a panic in a
// client hook) before its reply was read: it may or may not have run.
var errNoReply = errors.New("redisledger: the pipeline of this call failed before its reply")

// errUnsent marks the reply of a call whose caller gave up before it was
// sent: its script never ran.
var errUnsent = errors.New("redisledger: the call was never sent")

// cancelled is the reply of a call whose ctx ended: ctx.Err().
func cancelled(ctx context.Context) *redis.Cmd {
	cmd := redis.NewCmd(ctx)
	cmd.SetErr(ctx.Err())
	return cmd
}

// unsent is the reply of a call whose ctx ended before it was sent: an
// error that is both ctx.Err() and errUnsent.
func unsent(ctx context.Context) *redis.Cmd {
	cmd := redis.NewCmd(ctx)
	cmd.SetErr(fmt.Errorf("%w: %w", ctx.Err(), errUnsent))
	return cmd
}

// send sends batch as one pipeline, delivers the replies, and then hands
// the queue to its first waiter or gives back its place in flight.
func (b *batcher) send(batch []*call) {
	defer b.handOn(batch) // also if exec panics (a client hook): nobody is left waiting
	ctx, cancel := batchContext(batch)
	defer cancel()
	b.exec(ctx, batch)
}

// handOn completes the calls of a sent batch and hands the queue to its
// first waiter, or gives back the batch's place in flight.
func (b *batcher) handOn(batch []*call) {
	b.mu.Lock()
	for _, c := range batch {
		if c.cmd == nil {
			c.cmd = redis.NewCmd(c.ctx)
			c.cmd.SetErr(errNoReply)
		}
		c.state = done
	}
	next := b.queue
	b.queue = nil
	if len(next) == 0 {
		b.busy--
	} else {
		for _, c := range next {
			c.state = taken
		}
		next[0].state, next[0].next = lead, next
	}
	b.mu.Unlock()
	for _, c := range batch {
		c.signal()
	}
	if len(next) > 0 {
		next[0].signal()
	}
}

// signal wakes c's caller, if it queued. It never blocks: a caller waits
// for one signal, and a second (its batch done after it was handed the lead
// and left) finds the first still unread.
func (c *call) signal() {
	if c.wake == nil {
		return
	}
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// batchContext is the context a pipeline runs under: no cancellation (the
// calls belong to different callers, and each caller stops waiting on its
// own), and the latest deadline of the calls', when all have one, so that a
// stalled server is not waited for longer than any caller would; without
// one the client's read and write timeouts bound it.
func batchContext(batch []*call) (context.Context, context.CancelFunc) {
	var last time.Time
	for _, c := range batch {
		d, ok := c.ctx.Deadline()
		if !ok {
			return context.Background(), func() {}
		}
		if d.After(last) {
			last = d
		}
	}
	return context.WithDeadline(context.Background(), last)
}

// exec runs the scripts of batch in one pipeline by their SHA1 and, when
// Redis does not know some of them yet (NOSCRIPT), those again by their
// source, as redis.Script.Run does for a call alone.
func (b *batcher) exec(ctx context.Context, batch []*call) {
	if len(batch) == 0 {
		return
	}
	if len(batch) == 1 { // alone: no pipeline to build
		c := batch[0]
		c.cmd = c.script.Run(ctx, b.client, c.keys, c.args...)
		return
	}
	pipe := b.client.Pipeline()
	for _, c := range batch {
		c.cmd = c.script.EvalSha(ctx, pipe, c.keys, c.args...)
	}
	_, _ = pipe.Exec(ctx)
	var again redis.Pipeliner
	for _, c := range batch {
		if err := c.cmd.Err(); err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
			if again == nil {
				again = b.client.Pipeline()
			}
			c.cmd = c.script.Eval(ctx, again, c.keys, c.args...)
		}
	}
	if again != nil {
		_, _ = again.Exec(ctx)
	}
}
