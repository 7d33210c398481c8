package main

import (
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// hangups keeps SIGHUP from ending the daemon, as its default action
// would. Configuration reload does not exist yet: each SIGHUP is logged
// and otherwise ignored.
type hangups struct {
	c    chan os.Signal
	done chan struct{}
	wg   sync.WaitGroup
}

// catchHangups catches SIGHUP from now until stop. The signals caught
// before log is called wait for it (one is kept).
func catchHangups() *hangups {
	h := &hangups{c: make(chan os.Signal, 1), done: make(chan struct{})}
	signal.Notify(h.c, syscall.SIGHUP)
	return h
}

// log writes one line on logger for each SIGHUP, until stop.
func (h *hangups) log(logger *slog.Logger) {
	h.wg.Go(func() {
		for {
			select {
			case <-h.c:
				logger.Warn("neuron: SIGHUP ignored: configuration reload is not supported, restart to apply a new configuration")
			case <-h.done:
				return
			}
		}
	})
}

// stop stops catching SIGHUP and waits for the logging to end.
func (h *hangups) stop() {
	signal.Stop(h.c)
	close(h.done)
	h.wg.Wait()
}
