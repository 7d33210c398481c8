package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/internal/httpx"
)

// shutdownGrace bounds the graceful shutdown after SIGINT or SIGTERM.
const shutdownGrace = 30 * time.Second

// servers runs a gateway: its poller, its API server and its metrics
// server.
type servers struct {
	gw        *cortex.Gateway
	api       *http.Server
	metrics   *http.Server
	apiAddr   net.Addr
	metAddr   net.Addr
	stopPoll  context.CancelFunc
	wg        sync.WaitGroup
	errs      chan error
	closeOnce sync.Once
}

// warmUpTimeout bounds the first poll of the neurons before serving.
const warmUpTimeout = 5 * time.Second

// listeners are the bound addresses of a gateway, before it serves.
type listeners struct {
	api, metrics net.Listener
	served       bool // startServers took them
}

// listen binds the API and metrics addresses. A daemon binds them before
// it starts any background work, so that an address in use fails at once,
// with the address in the error.
func listen(apiAddr, metricsAddr string) (*listeners, error) {
	api, err := net.Listen("tcp", apiAddr)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	metrics, err := net.Listen("tcp", metricsAddr)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("metrics_listen: %w", err), api.Close())
	}
	return &listeners{api: api, metrics: metrics}, nil
}

// close closes the listeners unless startServers took them.
func (l *listeners) close() {
	if !l.served {
		_ = l.api.Close()
		_ = l.metrics.Close()
	}
}

// startServers polls every neuron once, then serves the gateway's API and
// metrics on lns, and runs its poller, until shutdown. Polling first means
// the first requests do not find every neuron unhealthy because none was
// polled yet; connections that arrive meanwhile wait in the listen
// backlog.
func startServers(gw *cortex.Gateway, lns *listeners, logger *slog.Logger) *servers {
	warmUp(gw, logger)
	lns.served = true
	apiLn, metLn := lns.api, lns.metrics
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", gw.MetricsHandler())
	errLog := slog.NewLogLogger(logger.Handler(), slog.LevelWarn)
	s := &servers{
		gw:      gw,
		api:     httpx.NewServer(gw, errLog),
		metrics: httpx.NewServer(mux, errLog),
		apiAddr: apiLn.Addr(),
		metAddr: metLn.Addr(),
		errs:    make(chan error, 3),
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.stopPoll = cancel
	s.wg.Go(func() {
		if err := gw.Run(ctx); err != nil {
			s.errs <- fmt.Errorf("poller: %w", err)
		}
	})
	for _, p := range []struct {
		srv *http.Server
		ln  net.Listener
	}{{s.api, apiLn}, {s.metrics, metLn}} {
		s.wg.Go(func() {
			if err := p.srv.Serve(p.ln); !errors.Is(err, http.ErrServerClosed) {
				s.errs <- err
			}
		})
	}
	return s
}

// failed delivers the first error of a server or the poller.
func (s *servers) failed() <-chan error { return s.errs }

// shutdown stops the gateway gracefully: new requests are refused while
// those in flight finish (up to ctx), then the servers close and the
// poller stops.
func (s *servers) shutdown(ctx context.Context) error {
	var err error
	s.closeOnce.Do(func() {
		errs := []error{s.gw.Shutdown(ctx), s.api.Shutdown(ctx), s.metrics.Shutdown(ctx)}
		s.stopPoll()
		s.wg.Wait()
		err = errors.Join(errs...)
	})
	return err
}

// warmUpConcurrency bounds the neurons polled at once at start: a fleet of
// a thousand neurons opens no thousand connections at once.
const warmUpConcurrency = 64

// warmUp polls every neuron once, concurrently (at most warmUpConcurrency
// at a time), when the poller can refresh; a neuron that does not answer
// is logged, not fatal.
func warmUp(gw *cortex.Gateway, logger *slog.Logger) {
	r, ok := gw.Poller().(route.Refresher)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), warmUpTimeout)
	defer cancel()
	var g errgroup.Group
	g.SetLimit(warmUpConcurrency)
	for _, n := range gw.Fleet().Neurons() {
		g.Go(func() error {
			if _, err := r.Refresh(ctx, n.Name); err != nil {
				logger.Warn("cortex: neuron not reachable at start", "neuron", n.Name, "err", err)
			}
			return nil
		})
	}
	_ = g.Wait() // every error was logged
}

// newLogger returns the logger of --log-format, writing to w.
func newLogger(format string, w io.Writer) (*slog.Logger, error) {
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, nil)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, nil)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}
