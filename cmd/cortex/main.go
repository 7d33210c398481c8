// Command cortex is the reference helexa gateway: an OpenAI-compatible API
// over a fleet of neurons (package cortex).
//
// Usage:
//
//	cortex serve [--config cortex.toml] [--log-format text|json]
//	cortex dev [--listen 127.0.0.1:31313] [--metrics-listen 127.0.0.1:31314] [--models testdata/models.toml]
//	cortex status [--endpoint URL] [--api-key KEY] [-o table|json]
//	cortex keys add|list|show|revoke|topup|set-cap [--config cortex.toml | --redis-url URL | --ledger FILE] ...
//	cortex house [--config house.toml] [--log-format text|json]
//	cortex version
//
// serve reads cortex.toml and serves until SIGINT or SIGTERM, then drains;
// SIGHUP, or POST /admin/reload with an admin key, reads cortex.toml again
// and applies its keys, catalogue, neurons and operator settings without a
// restart (see the README's "Reload without restart").
// Budgets live in memory, in a ledger file with an [entitlements.local]
// table (they survive a restart), or in Redis with an [entitlements.redis]
// table (shared by every replica); the keys of the file are seeded into
// either.
// dev needs no files: it starts an in-process neuron over the simulated
// engine, the catalogue of testdata/models.toml and a demo API key, and
// prints a curl command to try. status prints the neurons and models of a
// running gateway (its GET /status.json) as tables, or as JSON with -o
// json; an admin key (--api-key, or $HELEXA_API_KEY) adds the budgets.
// house serves the clearing house of house.toml (entitlements/house) to
// the gateways it lists, over the ledger of its [entitlements] table, with
// /health and /metrics; a gateway spends from it with an
// [entitlements.house] table in cortex.toml.
//
// The version is stamped at build time:
//
//	go build -ldflags "-X main.version=v1.2.3" ./cmd/cortex
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/helexa-ai/helexa-go/catalogue"
	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/internal/hangup"
)

// version is set with -ldflags "-X main.version=...".
var version = "dev"

const usage = `usage:
  cortex serve [--config cortex.toml] [--log-format text|json]
  cortex dev [--listen ADDR] [--metrics-listen ADDR] [--models FILE]
  cortex status [--endpoint URL] [--api-key KEY] [-o table|json]
  cortex keys add|list|show|revoke|topup|set-cap [--config cortex.toml | --redis-url URL | --ledger FILE] ...
  cortex house [--config house.toml] [--log-format text|json]
  cortex version`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, errorLine(err))
		stop()
		os.Exit(1)
	}
}

// errorLine is the line cortex prints for err: the error with one
// "cortex: " prefix. The errors of package cortex already carry it (a
// package's errors name their package, which is this command's name), so
// it is added only to the others.
func errorLine(err error) string {
	msg := err.Error()
	if strings.HasPrefix(msg, "cortex: ") {
		return msg
	}
	return "cortex: " + msg
}

// run dispatches a subcommand; each serves until ctx ends. --help or -h on
// any of them prints its usage and is no error.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	err := dispatch(ctx, args, stdout, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}

// dispatch runs the subcommand of args[0].
func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return errors.New("no command")
	}
	switch args[0] {
	case "serve":
		return runServe(ctx, args[1:], stderr)
	case "dev":
		return runDev(ctx, args[1:], stdout, stderr)
	case "status":
		return runStatus(ctx, args[1:], stdout, stderr)
	case "keys":
		return runKeys(ctx, args[1:], stdout, stderr)
	case "house":
		return runHouse(ctx, args[1:], stderr)
	case "version", "--version", "-version":
		_, err := fmt.Fprintln(stdout, version)
		return err
	case "help", "-h", "--help":
		_, err := fmt.Fprintln(stdout, usage)
		return err
	}
	fmt.Fprintln(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}

// runServe is "cortex serve": the gateway of cortex.toml.
func runServe(ctx context.Context, args []string, stderr io.Writer) error {
	hup := hangup.Catch()
	defer hup.Stop()
	fs := flag.NewFlagSet("cortex serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "cortex.toml", "path of the cortex.toml configuration")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	if err := fs.Parse(args); err != nil {
		return err
	}
	logger, err := newLogger(*logFormat, stderr)
	if err != nil {
		return err
	}
	cfg, err := cortex.LoadConfig(*configPath)
	if err != nil {
		return err
	}
	// Bind before anything starts (the ledger, the metering, a poll of
	// the neurons), so that a busy port fails at once.
	lns, err := listen(cfg.Gateway.Listen, cfg.Gateway.MetricsListen)
	if err != nil {
		return err
	}
	defer lns.close() // a no-op once the servers own them
	var cat *catalogue.Catalogue
	if cfg.ModelsConfig != "" {
		if cat, err = catalogue.Load(cfg.ModelsConfig); err != nil {
			return err
		}
	}
	mopts, closeMeter, err := newMetering(cfg.Metering, logger)
	if err != nil {
		return err
	}
	defer closeMeter()
	provider, closer, keys, err := newProvider(cfg.Entitlements, filepath.Dir(*configPath), logger)
	if err != nil {
		return err
	}
	defer closer.Close()
	rl := &reloader{path: *configPath, started: cfg, keys: keys, log: logger}
	opts := append(append(cfg.GatewayOptions(), cortex.WithLogger(logger), cortex.WithProvider(provider),
		cortex.WithReloadFunc(rl.reload)), mopts...)
	gw, err := cortex.NewGateway(cfg.Neurons, cat, opts...)
	if err != nil {
		return err
	}
	rl.gw = gw
	srv := startServers(gw, lns, logger)
	logger.Info("cortex: serving", "listen", srv.apiAddr.String(), "metrics", srv.metAddr.String(),
		"neurons", len(cfg.Neurons), "models", cat.Len(), "version", version)
	hup.Handle(rl.hangup)
	return serveUntil(ctx, srv.failed(), srv.shutdown, logger)
}

// serveUntil waits for ctx to end (or a server to fail), then shuts down.
func serveUntil(ctx context.Context, failed <-chan error, shutdown func(context.Context) error, logger *slog.Logger) error {
	var err error
	select {
	case <-ctx.Done():
	case err = <-failed:
		logger.Error("cortex: server failed", "err", err)
	}
	logger.Info("cortex: shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	return errors.Join(err, shutdown(sctx))
}
