// Package hangup keeps SIGHUP from ending a daemon, as its default action
// would. Configuration reload does not exist yet: each SIGHUP is logged and
// otherwise ignored. cmd/cortex and cmd/neuron use it.
package hangup

import (
	"log/slog"
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

// Catch catches SIGHUP from now until Stop. The signals caught before Log
// is called wait for it (one is kept).
func Catch() *Catcher {
	h := &Catcher{c: make(chan os.Signal, 1), done: make(chan struct{})}
	signal.Notify(h.c, syscall.SIGHUP)
	return h
}

// Log writes one line on logger for each SIGHUP, until Stop; daemon names
// the program in the line ("cortex", "neuron").
func (h *Catcher) Log(logger *slog.Logger, daemon string) {
	h.wg.Go(func() {
		for {
			select {
			case <-h.c:
				logger.Warn(daemon + ": SIGHUP ignored: configuration reload is not supported, restart to apply a new configuration")
			case <-h.done:
				return
			}
		}
	})
}

// Stop stops catching SIGHUP and waits for the logging to end.
func (h *Catcher) Stop() {
	signal.Stop(h.c)
	close(h.done)
	h.wg.Wait()
}
