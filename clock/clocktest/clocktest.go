// Package clocktest provides Fake, a clock.Clock whose time moves only when
// a test moves it, firing the timers and tickers that fall due in order.
// With it a test of a timeout, a retry or a periodic flush needs no real
// time: it waits until the code under test has armed its timers
// (WaitArmed), moves the time past them (Advance), and checks the effect.
package clocktest

import (
	"context"
	"sync"
	"time"

	"github.com/helexa-ai/helexa-go/clock"
)

// Fake is a manual clock.Clock: it stands still until Advance or Set moves
// it. Moving it forward fires every timer and ticker that falls due on the
// way, earliest first (in the order they were armed when due together),
// with Now reading each one's due time as it fires. A timer armed for zero
// or less fires at once, as time's does.
//
// Delivery follows the time package: a timer's or ticker's channel holds
// one time and a tick finding it full is dropped; after Stop or Reset the
// channel delivers nothing of the earlier arming. Unlike time.AfterFunc, a
// function due while the time moves runs in the goroutine that moves it,
// before Advance or Set returns, so that its effect is there when the
// test looks; it must therefore not wait for the test's goroutine. (One
// armed for zero or less runs in a goroutine of its own, since its caller
// may hold locks it takes.)
//
// A Fake is safe for concurrent use. The zero value is not usable; call
// New.
type Fake struct {
	mu      sync.Mutex
	now     time.Time
	armed   []*fakeTimer
	seq     uint64
	changed chan struct{} // closed and replaced when a timer is armed
}

var _ clock.Clock = (*Fake)(nil)

// New returns a Fake that reads start.
func New(start time.Time) *Fake { return &Fake{now: start, changed: make(chan struct{})} }

// Now returns the fake's current time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// NewTicker arms a ticker that delivers the time every d of fake time. It
// panics when d is not positive, as time.NewTicker does.
func (f *Fake) NewTicker(d time.Duration) (<-chan time.Time, func()) {
	if d <= 0 {
		panic("clocktest: non-positive interval for NewTicker")
	}
	t := &fakeTimer{f: f, c: make(chan time.Time, 1), period: d, index: -1}
	f.mu.Lock()
	f.arm(t, d)
	f.mu.Unlock()
	return t.c, func() { t.Stop() }
}

// NewTimer arms a timer that delivers the time once d of fake time has
// passed.
func (f *Fake) NewTimer(d time.Duration) clock.Timer {
	t := &fakeTimer{f: f, c: make(chan time.Time, 1), index: -1}
	t.Reset(d)
	return t
}

// AfterFunc arms a timer that calls fn once d of fake time has passed.
func (f *Fake) AfterFunc(d time.Duration, fn func()) clock.Timer {
	t := &fakeTimer{f: f, fn: fn, index: -1}
	t.Reset(d)
	return t
}

// Advance moves the time forward by d, firing what falls due; a negative d
// moves it back and fires nothing.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	to := f.now.Add(d)
	f.mu.Unlock()
	f.Set(to)
}

// Set moves the time to t, firing what falls due when t is later than
// Now.
func (f *Fake) Set(t time.Time) {
	for {
		f.mu.Lock()
		next := f.next(t)
		if next == nil {
			f.now = t
			f.mu.Unlock()
			return
		}
		if next.due.After(f.now) {
			f.now = next.due
		}
		fn := next.fire()
		f.mu.Unlock()
		if fn != nil {
			fn()
		}
	}
}

// Armed returns how many timers and tickers are armed: made or reset and
// neither fired (for a timer) nor stopped.
func (f *Fake) Armed() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.armed)
}

// WaitArmed returns once at least n timers and tickers are armed, or
// ctx.Err() when ctx ends first. A test calls it before Advance, so that
// the timer it means to fire exists.
func (f *Fake) WaitArmed(ctx context.Context, n int) error {
	for {
		f.mu.Lock()
		armed, changed := len(f.armed), f.changed
		f.mu.Unlock()
		if armed >= n {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// next returns the armed timer due first at or before to, or nil. f.mu is
// held.
func (f *Fake) next(to time.Time) *fakeTimer {
	var first *fakeTimer
	for _, t := range f.armed {
		if t.due.After(to) {
			continue
		}
		if first == nil || t.due.Before(first.due) || (t.due.Equal(first.due) && t.seq < first.seq) {
			first = t
		}
	}
	return first
}

// arm schedules t d from now, firing it at once when d is not positive.
// f.mu is held.
func (f *Fake) arm(t *fakeTimer, d time.Duration) {
	f.seq++
	t.seq, t.due = f.seq, f.now.Add(d)
	if d <= 0 && t.period == 0 {
		if fn := t.deliver(); fn != nil {
			go fn()
		}
		return
	}
	t.index = len(f.armed)
	f.armed = append(f.armed, t)
	close(f.changed)
	f.changed = make(chan struct{})
}

// disarm removes t from the armed timers and drains its channel, and
// reports whether it was armed. f.mu is held.
func (f *Fake) disarm(t *fakeTimer) bool {
	if t.c != nil {
		select {
		case <-t.c:
		default:
		}
	}
	if t.index < 0 {
		return false
	}
	last := f.armed[len(f.armed)-1]
	f.armed[t.index], last.index = last, t.index
	f.armed = f.armed[:len(f.armed)-1]
	t.index = -1
	return true
}

// fakeTimer is a timer or (with a period) a ticker of a Fake.
type fakeTimer struct {
	f      *Fake
	c      chan time.Time // nil for AfterFunc
	fn     func()
	period time.Duration // a ticker's
	due    time.Time
	seq    uint64
	index  int // in f.armed, or -1
}

// fire delivers the due t and re-arms a ticker; it returns the function
// to call, if any. f.mu is held.
func (t *fakeTimer) fire() func() {
	if t.period > 0 {
		t.f.seq++
		t.seq = t.f.seq
		t.due = t.due.Add(t.period)
	} else {
		t.f.disarm(t)
	}
	return t.deliver()
}

// deliver sends the time on the channel, dropping it when the channel is
// full, or returns the function to call. f.mu is held.
func (t *fakeTimer) deliver() func() {
	if t.c != nil {
		select {
		case t.c <- t.f.now:
		default:
		}
	}
	return t.fn
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

func (t *fakeTimer) Stop() bool {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	return t.f.disarm(t)
}

func (t *fakeTimer) Reset(d time.Duration) bool {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	was := t.f.disarm(t)
	t.f.arm(t, d)
	return was
}
