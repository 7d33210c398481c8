package route

import (
	"sync/atomic"
	"time"
)

// Ejection is the live outlier state of one replica (a model on a neuron):
// whether the gateway has taken it out of rotation because its answers
// kept failing, and until when. It lives in the gateway's Usage, and each
// snapshot's ModelState points to it, as it points to the replica's
// Counter: a Router reads it with an atomic load, and sees an ejection the
// moment it happens, not at the next poll.
//
// The gateway's outlier tracker is its only writer (Eject and Readmit); a
// Router or Evictor only reads it. Its methods are safe for concurrent use
// and accept a nil *Ejection (a replica that was never ejected, or a
// snapshot built without a Usage) for reading.
type Ejection struct {
	since atomic.Int64 // Unix ns of the current ejection; 0: in rotation
	until atomic.Int64 // Unix ns of its end
	count atomic.Int64 // ejections since the gateway started
}

// Active reports whether the replica is out of rotation at t: it was
// ejected and its period has not ended at t. The default Router passes the
// snapshot's time (Fleet.At), so that a period's end is seen by the next
// snapshot.
func (e *Ejection) Active(t time.Time) bool {
	if e == nil {
		return false
	}
	u := e.until.Load()
	return u != 0 && u > t.UnixNano()
}

// Since returns when the current ejection began; the zero time when the
// replica is in rotation (or its last period ended and no request or poll
// has brought it back yet: see Active).
func (e *Ejection) Since() time.Time {
	if e == nil {
		return time.Time{}
	}
	return unixTime(e.since.Load())
}

// Until returns when the current ejection ends; the zero time when the
// replica is in rotation.
func (e *Ejection) Until() time.Time {
	if e == nil {
		return time.Time{}
	}
	return unixTime(e.until.Load())
}

// Count returns how many times the gateway has ejected the replica.
func (e *Ejection) Count() int {
	if e == nil {
		return 0
	}
	return int(e.count.Load())
}

func unixTime(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// Eject records that the replica is out of rotation from since until
// until. A new since counts one more ejection (see Count). The gateway's
// outlier tracker calls it; a Router must not.
func (e *Ejection) Eject(since, until time.Time) {
	if e.since.Load() != since.UnixNano() {
		e.count.Add(1)
	}
	e.since.Store(since.UnixNano())
	e.until.Store(until.UnixNano())
}

// Readmit records that the replica is back in rotation. The gateway's
// outlier tracker calls it; a Router must not.
func (e *Ejection) Readmit() {
	e.until.Store(0)
	e.since.Store(0)
}
