// Package clock is the one source of time for helexa's gateway, its
// decision layer, its metering and its neuron: the reading of the time and
// every timer and ticker they wait on. Each package that waits takes a
// Clock through a WithClock option; the default is System, the time
// package. Tests pass a clocktest.Fake instead and move time themselves, so
// that a stream's idle timeout, a settle's retry or a file sink's flush
// happens at once and in a known order, without real sleeps.
//
// What a Clock cannot drive: deadlines that the operating system or a
// library keeps in real time. A connection's read and write deadlines
// (net.Conn.SetDeadline, http.ResponseController.SetWriteDeadline), the
// timeouts of context.WithTimeout and context.WithDeadline, and the
// timeouts of go-redis clients all run on the system clock, whatever the
// Clock. The packages say, on each WithClock, which of their waits are of
// this kind.
package clock

import "time"

// Clock tells the time and arms timers and tickers. Its methods mirror the
// time package's functions of the same names.
//
// Concurrency: every method may be called from many goroutines at once.
// Callbacks given to AfterFunc run in their own goroutine (System) or in
// the goroutine that moves the time (clocktest.Fake), never with a lock of
// the Clock held.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// NewTicker returns a channel that delivers the time every d, dropping
	// ticks for a slow reader, and a function that stops it. d must be
	// positive.
	NewTicker(d time.Duration) (c <-chan time.Time, stop func())
	// NewTimer returns a Timer that delivers the time on its channel once
	// d has passed.
	NewTimer(d time.Duration) Timer
	// AfterFunc returns a Timer that calls f once d has passed. Its C
	// returns nil.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is one event, armed by Clock.NewTimer or Clock.AfterFunc. Its
// methods behave as time.Timer's do since Go 1.23: after Stop or Reset
// returns, the channel delivers no time of the earlier arming.
//
// Concurrency: its methods may be called from many goroutines at once.
type Timer interface {
	// C returns the channel on which a NewTimer's time is delivered, or nil
	// for an AfterFunc.
	C() <-chan time.Time
	// Stop disarms the timer. It reports whether this stopped it, false
	// when it had already fired or been stopped.
	Stop() bool
	// Reset arms the timer again to fire d from now, also after it fired
	// or was stopped. It reports whether it was armed.
	Reset(d time.Duration) bool
}

// System is the Clock of the time package: time.Now, time.NewTicker,
// time.NewTimer and time.AfterFunc. Its zero value is ready to use.
type System struct{}

var _ Clock = System{}

// Now returns time.Now().
func (System) Now() time.Time { return time.Now() }

// NewTicker returns a time.Ticker's channel and Stop.
func (System) NewTicker(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTicker(d)
	return t.C, t.Stop
}

// NewTimer returns a time.NewTimer.
func (System) NewTimer(d time.Duration) Timer { return systemTimer{time.NewTimer(d)} }

// AfterFunc returns a time.AfterFunc.
func (System) AfterFunc(d time.Duration, f func()) Timer {
	return systemTimer{time.AfterFunc(d, f)}
}

// systemTimer is a *time.Timer as a Timer.
type systemTimer struct{ t *time.Timer }

func (s systemTimer) C() <-chan time.Time        { return s.t.C }
func (s systemTimer) Stop() bool                 { return s.t.Stop() }
func (s systemTimer) Reset(d time.Duration) bool { return s.t.Reset(d) }
