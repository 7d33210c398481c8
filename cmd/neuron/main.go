// Command neuron is the reference helexa neuron daemon: it reads
// neuron.toml, discovers the GPUs (NVML, or a static list), runs engines as
// child processes and serves the neuron API (package neuron) until SIGINT
// or SIGTERM, then drains and stops every engine. SIGHUP reads neuron.toml
// again and applies its [admission] limits and its [[engines]] templates
// (and default_engine) without a restart; engines already running are
// untouched, and the other settings take a restart (the log names those
// that changed). An invalid file changes nothing, and is logged.
//
// Usage:
//
//	neuron [--config neuron.toml] [--log-format text|json] [--version]
//
// The version is stamped at build time:
//
//	go build -ldflags "-X main.version=v1.2.3" ./cmd/neuron
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/helexa-ai/helexa-go/internal/hangup"
	"github.com/helexa-ai/helexa-go/internal/httpx"
	"github.com/helexa-ai/helexa-go/neuron"
	"github.com/helexa-ai/helexa-go/neuron/engine"
	"github.com/helexa-ai/helexa-go/neuron/nvml"
)

// version is set with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, errorLine(err))
		stop()
		os.Exit(1)
	}
}

// errorLine is the line neuron prints for err: the error with one
// "neuron: " prefix. The errors of package neuron already carry it (a
// package's errors name their package, which is this command's name), so
// it is added only to the others.
func errorLine(err error) string {
	msg := err.Error()
	if strings.HasPrefix(msg, "neuron: ") {
		return msg
	}
	return "neuron: " + msg
}

// run is the daemon: it serves until ctx ends, then shuts down gracefully.
// --help or -h prints the usage and is no error.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	err := serve(ctx, args, stdout, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}

// serve parses args and runs the daemon.
func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	hup := hangup.Catch()
	defer hup.Stop()
	fs := flag.NewFlagSet("neuron", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: neuron [--config neuron.toml] [--log-format text|json] [--version]")
		fs.PrintDefaults()
	}
	configPath := fs.String("config", "neuron.toml", "path of the neuron.toml configuration")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *showVersion {
		_, err := fmt.Fprintln(stdout, version)
		return err
	}
	var logger *slog.Logger
	switch *logFormat {
	case "text":
		logger = slog.New(slog.NewTextHandler(stderr, nil))
	case "json":
		logger = slog.New(slog.NewJSONHandler(stderr, nil))
	default:
		return fmt.Errorf("--log-format %q: want text or json", *logFormat)
	}
	cfg, err := neuron.LoadConfig(*configPath)
	if err != nil {
		return err
	}
	// Bind before anything starts (NVML, the engines of default_models),
	// so that a busy port fails at once.
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer ln.Close() // the server's, once it serves: then a no-op

	var disc neuron.Discoverer
	if cfg.Discovery.Kind == neuron.DiscoveryStatic {
		disc = neuron.NewStaticDiscoverer(cfg.StaticDiscovery())
	} else {
		nd := nvml.New(nvml.WithHostname(cfg.Discovery.Hostname), nvml.WithLogger(logger))
		defer nd.Close()
		disc = nd
	}
	harness, err := engine.New(cfg.Engines, engine.WithLogger(logger), engine.WithDefaultEngine(cfg.DefaultEngine))
	if err != nil {
		return err
	}
	agent, err := neuron.NewAgent(harness, disc,
		append(cfg.AgentOptions(), neuron.WithLogger(logger), neuron.WithVersion(version))...)
	if err != nil {
		return errors.Join(err, harness.Close(context.Background()))
	}
	if err := agent.Start(ctx); err != nil {
		return errors.Join(err, agent.Shutdown(context.Background()))
	}
	srv := httpx.NewServer(agent, slog.NewLogLogger(logger.Handler(), slog.LevelWarn))
	logger.Info("neuron: serving", "listen", ln.Addr().String(), "version", version, "discovery", cfg.Discovery.Kind)
	hup.Handle(func() { reload(*configPath, cfg, agent, harness, logger) })
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	var serveErr error
	select {
	case serveErr = <-served:
	case <-ctx.Done():
	}
	// Drain while still listening, so that new requests get 503
	// shutting_down (and go elsewhere) rather than a refused connection.
	sctx, cancel := context.WithTimeout(context.Background(), cfg.DrainTimeout.Std()+time.Minute)
	defer cancel()
	err = errors.Join(serveErr, agent.Shutdown(sctx), srv.Shutdown(sctx))
	if serveErr == nil {
		<-served // http.ErrServerClosed
	}
	return err
}
