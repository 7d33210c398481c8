package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/entitlements/redisledger"
)

// redisStartTimeout bounds the first contact with Redis at start.
const redisStartTimeout = 10 * time.Second

// newProvider builds the entitlements Provider of the [entitlements]
// table: none when it has neither keys nor require_auth; the shared Redis
// ledger when it has a [redis] table, refused when that Redis does not
// persist (unless allow_volatile_redis), seeded with the keys of the file
// (Redis keeps what it already holds); else a Local provider with the keys.
// The returned Closer releases it.
func newProvider(cfg entitlements.Config, logger *slog.Logger) (entitlements.Provider, io.Closer, error) {
	if cfg.Redis == nil {
		if !cfg.RequireAuth && len(cfg.Keys) == 0 {
			return nil, nopCloser{}, nil
		}
		local, err := entitlements.NewLocal(cfg)
		return local, nopCloser{}, err
	}
	keys, err := cfg.APIKeys()
	if err != nil {
		return nil, nil, err
	}
	ledger, err := redisledger.Open(*cfg.Redis, redisledger.WithLogger(logger))
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), redisStartTimeout)
	defer cancel()
	if err := ledger.Ping(ctx); err != nil {
		return nil, nil, errors.Join(fmt.Errorf("entitlements.redis: %w", err), ledger.Close())
	}
	if err := ledger.CheckPersistence(ctx); err != nil {
		if !cfg.Redis.AllowVolatileRedis {
			return nil, nil, errors.Join(fmt.Errorf("entitlements.redis: %w", err), ledger.Close())
		}
		logger.Warn("cortex: allow_volatile_redis is set: budgets last only as long as Redis keeps them", "err", err)
	}
	rep, err := ledger.Seed(ctx, keys)
	if err != nil {
		return nil, nil, errors.Join(fmt.Errorf("entitlements.redis: seeding the keys: %w", err), ledger.Close())
	}
	logger.Info("cortex: keys seeded into redis", "added", rep.Added, "present", rep.Present)
	for _, c := range rep.Conflicts {
		logger.Warn("cortex: redis holds a key differently from the configuration; redis wins", "conflict", c)
	}
	return ledger, ledger, nil
}

type nopCloser struct{}

func (nopCloser) Close() error { return nil }
