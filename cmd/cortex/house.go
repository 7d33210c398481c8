package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/entitlements/house"
	"github.com/helexa-ai/helexa-go/internal/httpx"
)

// The clearing house is a cortex subcommand rather than a binary of its
// own: it builds its ledger exactly as "cortex serve" does (the same
// [entitlements] table, Redis persistence checks and key seeding), and
// "cortex keys" manages the keys it serves, so one binary to ship and one
// configuration language serve both sides.

// runHouse is "cortex house": the clearing house of house.toml, with
// /health and /metrics beside the protocol, until ctx ends.
func runHouse(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("cortex house", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "house.toml", "path of the house configuration")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	if err := fs.Parse(args); err != nil {
		return err
	}
	logger, err := newLogger(*logFormat, stderr)
	if err != nil {
		return err
	}
	cfg, err := house.LoadConfig(*configPath)
	if err != nil {
		return err
	}
	dir := filepath.Dir(*configPath)
	provider, closer, _, err := newProvider(cfg.Entitlements, dir, logger)
	if err != nil {
		return err
	}
	if provider == nil {
		return errors.New("house: the [entitlements] table holds no ledger (no keys, [local] or [redis])")
	}
	defer closer.Close()
	reg := prometheus.NewRegistry()
	opts, _ := cfg.Options()
	h, err := house.NewHandler(provider, append(opts, house.WithLogger(logger), house.WithRegisterer(reg))...)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/", h)
	mux.Handle("/", h) // other versions: answered unsupported_version
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := httpx.NewServer(mux, slog.NewLogLogger(logger.Handler(), slog.LevelWarn))
	if cfg.TLSCert != "" {
		if srv.TLSConfig, err = houseTLS(cfg, dir); err != nil {
			return err
		}
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				h.Expire(ctx)
			}
		}
	}()
	errs := make(chan error, 1)
	go func() {
		if cfg.TLSCert != "" {
			errs <- srv.ServeTLS(ln, resolvePath(dir, cfg.TLSCert), resolvePath(dir, cfg.TLSKey))
		} else {
			errs <- srv.Serve(ln)
		}
	}()
	logger.Info("house: serving", "listen", ln.Addr().String(), "tls", cfg.TLSCert != "", "gateways", len(cfg.Gateways))
	select {
	case err := <-errs:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

// houseTLS is Go's standard TLS configuration, asking for gateway
// certificates when client_ca is set.
func houseTLS(cfg house.Config, dir string) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.ClientCA == "" {
		return tc, nil
	}
	pem, err := os.ReadFile(resolvePath(dir, cfg.ClientCA))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("client_ca %s: no certificate", cfg.ClientCA)
	}
	tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
	return tc, nil
}

// newHouseClient is the Provider of an [entitlements.house] table: a
// Client of the house, its token read from token_file.
func newHouseClient(hc entitlements.HouseConfig, configDir string) (*house.Client, error) {
	tok, err := os.ReadFile(resolvePath(configDir, hc.TokenFile))
	if err != nil {
		return nil, fmt.Errorf("entitlements.house: token_file: %w", err)
	}
	var opts []house.ClientOption
	if hc.Timeout > 0 {
		opts = append(opts, house.WithTimeout(time.Duration(hc.Timeout)))
	}
	if hc.ResolveTTL > 0 || hc.UnknownKeyTTL > 0 {
		known, unknown := house.DefaultResolveTTL, house.DefaultUnknownKeyTTL
		if hc.ResolveTTL > 0 {
			known = time.Duration(hc.ResolveTTL)
		}
		if hc.UnknownKeyTTL > 0 {
			unknown = time.Duration(hc.UnknownKeyTTL)
		}
		opts = append(opts, house.WithResolveCache(known, unknown))
	}
	if hc.Grants {
		g := house.GrantConfig{FlushInterval: time.Duration(hc.FlushInterval)}
		if hc.GrantJournal != "" {
			g.Journal = resolvePath(configDir, hc.GrantJournal)
		}
		opts = append(opts, house.WithGrants(g))
	}
	c, err := house.NewClient(hc.URL, strings.TrimSpace(string(tok)), opts...)
	if err != nil {
		return nil, fmt.Errorf("entitlements.house: %w", err)
	}
	return c, nil
}

// houseCloser gives a Client's grants back at shutdown.
type houseCloser struct{ c *house.Client }

func (h houseCloser) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return h.c.Close(ctx)
}
