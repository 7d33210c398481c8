package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/entitlements/redisledger"
)

// redisStartTimeout bounds the first contact with Redis at start.
const redisStartTimeout = 10 * time.Second

// newProvider builds the entitlements Provider of the [entitlements]
// table: a client of the clearing house of [entitlements.house]; a durable Local over the ledger file of [entitlements.local]
// (a relative path is taken from configDir), seeded with the keys of the
// file; else none when it has neither keys nor require_auth; the shared Redis
// ledger when it has a [redis] table, refused when that Redis does not
// persist (unless allow_volatile_redis), seeded with the keys of the file
// (Redis keeps what it already holds); a clearing house client with
// [house]; else an in-memory Local provider
// with the keys (with none, so that a reload can add some: without keys
// and require_auth every caller is served as anonymous, as without a
// provider). The returned Closer releases it, and the keySetter takes the
// keys of a configuration read again.
func newProvider(cfg entitlements.Config, configDir string, logger *slog.Logger) (entitlements.Provider, io.Closer, keySetter, error) {
	if cfg.House != nil {
		// The house keeps the keys: a reload has none to set here.
		c, err := newHouseClient(*cfg.House, configDir)
		if err != nil {
			return nil, nil, nil, err
		}
		logger.Info("cortex: budgets kept by a clearing house", "url", cfg.House.URL, "grants", cfg.House.Grants)
		return c, houseCloser{c}, nil, nil
	}
	if cfg.Local != nil {
		lc := *cfg.Local
		lc.Path = resolvePath(configDir, lc.Path)
		cfg.Local = &lc
		local, err := entitlements.OpenLocal(cfg, entitlements.WithLogger(logger))
		if err != nil {
			return nil, nil, nil, fmt.Errorf("entitlements.local: %w", err)
		}
		logger.Info("cortex: budgets kept in the ledger file", "path", lc.Path)
		return local, local, seeder(local.Seed, logger), nil
	}
	if cfg.Redis == nil {
		local, err := entitlements.NewLocal(cfg)
		if err != nil {
			return nil, nil, nil, err
		}
		return local, nopCloser{}, local.SetKeys, nil
	}
	keys, err := cfg.APIKeys()
	if err != nil {
		return nil, nil, nil, err
	}
	ledger, err := redisledger.Open(*cfg.Redis, redisledger.WithLogger(logger))
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), redisStartTimeout)
	defer cancel()
	if err := ledger.Ping(ctx); err != nil {
		return nil, nil, nil, errors.Join(fmt.Errorf("entitlements.redis: %w", err), ledger.Close())
	}
	if err := ledger.CheckPersistence(ctx); err != nil {
		if !cfg.Redis.AllowVolatileRedis {
			return nil, nil, nil, errors.Join(fmt.Errorf("entitlements.redis: %w", err), ledger.Close())
		}
		logger.Warn("cortex: allow_volatile_redis is set: budgets last only as long as Redis keeps them", "err", err)
	}
	rep, err := ledger.Seed(ctx, keys)
	if err != nil {
		return nil, nil, nil, errors.Join(fmt.Errorf("entitlements.redis: seeding the keys: %w", err), ledger.Close())
	}
	logger.Info("cortex: keys seeded into redis", "added", rep.Added, "present", rep.Present)
	for _, c := range rep.Conflicts {
		logger.Warn("cortex: redis holds a key differently from the configuration; redis wins", "conflict", c)
	}
	seed := func(ctx context.Context, keys []entitlements.Key) ([]string, error) {
		rep, err := ledger.Seed(ctx, keys)
		return rep.Conflicts, err
	}
	return ledger, ledger, seeder(seed, logger), nil
}

// keySetter takes the keys of a configuration read again (a reload).
type keySetter func(ctx context.Context, keys []entitlements.Key) error

// seeder is the keySetter of a ledger that is the source of truth for its
// keys (a ledger file, Redis): the keys it does not hold are added, those
// it holds differently are logged, and none is removed or changed ("cortex
// keys" does that).
func seeder(seed func(context.Context, []entitlements.Key) ([]string, error), logger *slog.Logger) keySetter {
	return func(ctx context.Context, keys []entitlements.Key) error {
		conflicts, err := seed(ctx, keys)
		for _, c := range conflicts {
			logger.Warn("cortex: the ledger holds a key differently from the configuration; the ledger wins", "conflict", c)
		}
		return err
	}
}

// resolvePath returns path, taken from dir when relative.
func resolvePath(dir, path string) string {
	if path == "" || filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(dir, path)
}

type nopCloser struct{}

func (nopCloser) Close() error { return nil }
