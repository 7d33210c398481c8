// Package testout captures the output of a program run by a test and waits
// for a line to appear in it. Waiting is woken by each write rather than by
// polling on a timer.
package testout

import (
	"bytes"
	"regexp"
	"sync"
	"testing"
	"time"
)

// Buffer collects output; it is safe for concurrent writers and readers.
// The zero value is ready to use.
type Buffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	changed chan struct{} // closed and replaced on every write
}

// Write appends p and wakes every Wait.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, err := b.b.Write(p)
	if b.changed != nil {
		close(b.changed)
		b.changed = nil
	}
	return n, err
}

// String returns the output so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Wait returns the submatches of the first match of re in the output,
// waiting up to timeout for it to appear. It fails tb when the program ends
// first (done delivers; a nil done is never ready) or the time runs out.
func (b *Buffer) Wait(tb testing.TB, re *regexp.Regexp, done <-chan error, timeout time.Duration) []string {
	tb.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		b.mu.Lock()
		m := re.FindStringSubmatch(b.b.String())
		if b.changed == nil {
			b.changed = make(chan struct{})
		}
		changed := b.changed
		b.mu.Unlock()
		if m != nil {
			return m
		}
		select {
		case <-changed:
		case err := <-done:
			tb.Fatalf("the program ended (%v) before printing %v; output:\n%s", err, re, b.String())
		case <-timer.C:
			tb.Fatalf("no %v in the output after %v:\n%s", re, timeout, b.String())
		}
	}
}
