// Package hangup turns SIGHUP, whose default action ends a process, into a
// call: the daemons reload their configuration on it (cortex serve and
// neuron). cmd/cortex and cmd/neuron use it.
package hangup

import (
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// Catcher catches SIGHUP from Catch until Stop.
type Catcher struct {
	c    chan os.Signal
	done chan struct{}
	wg   sync.WaitGroup
}

// Catch catches SIGHUP from now until Stop, so that none ends the
// process. The signals caught before Handle is called wait for it (one is
// kept).
func Catch() *Catcher {
	h := &Catcher{c: make(chan os.Signal, 1), done: make(chan struct{})}
	signal.Notify(h.c, syscall.SIGHUP)
	return h
}

// Handle calls f for each SIGHUP, one call at a time, until Stop. SIGHUPs
// that arrive while f runs are coalesced into one more call.
func (h *Catcher) Handle(f func()) {
	h.wg.Go(func() {
		for {
			select {
			case <-h.c:
				f()
			case <-h.done:
				return
			}
		}
	})
}

// Stop stops catching SIGHUP and waits for a call of Handle's function in
// progress to return.
func (h *Catcher) Stop() {
	signal.Stop(h.c)
	close(h.done)
	h.wg.Wait()
}
