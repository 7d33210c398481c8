package redisledger

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Errors of CheckPersistence.
var (
	// ErrVolatile: Redis persists nothing (appendonly no and no save
	// rule), so a restart of Redis forgets every spend and every prepaid
	// balance comes back.
	ErrVolatile = errors.New("redisledger: Redis persists nothing")
	// ErrPersistenceUnknown: Redis refused to tell its persistence
	// settings (CONFIG GET is disabled, renamed or not granted to the
	// ledger's user, as on many managed services).
	ErrPersistenceUnknown = errors.New("redisledger: Redis's persistence could not be verified")
)

// CheckPersistence asks Redis (CONFIG GET appendonly, CONFIG GET save)
// whether it persists its data: with AOF (appendonly yes) or with RDB
// snapshots (a non-empty save rule). Budgets are only as durable as Redis's
// persistence, so a gateway checks this at start (cortex does, unless
// allow_volatile_redis = true).
//
// It returns nil when either is on; an error wrapping ErrVolatile, naming
// the settings to change, when neither is; an error wrapping
// ErrPersistenceUnknown when Redis answers CONFIG GET with an error;
// ctx.Err() or an *entitlements.UnavailableError when Redis cannot be
// reached. On Redis Cluster it asks the node the client picks for CONFIG.
//
// An RDB-only Redis loses the writes since its last snapshot when it
// crashes; AOF with appendfsync everysec loses about one second.
func (l *Ledger) CheckPersistence(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	get := func(param string) (string, error) {
		m, err := l.client.ConfigGet(ctx, param).Result()
		if err == nil {
			return m[param], nil
		}
		var rerr redis.Error
		if errors.As(err, &rerr) && ctx.Err() == nil {
			return "", fmt.Errorf("%w: CONFIG GET %s: %v; grant the ledger's Redis user CONFIG GET "+
				"(ACL: +config|get), or, once you have checked that Redis persists (AOF or RDB), "+
				"set allow_volatile_redis = true in [entitlements.redis]", ErrPersistenceUnknown, param, err)
		}
		return "", fail(ctx, err)
	}
	aof, err := get("appendonly")
	if err != nil {
		return err
	}
	save, err := get("save")
	if err != nil {
		return err
	}
	if strings.EqualFold(aof, "yes") || strings.TrimSpace(save) != "" {
		return nil
	}
	return fmt.Errorf("%w (appendonly %q, save %q): a restart of Redis would forget every budget's spend; "+
		"set \"appendonly yes\" (AOF, best with appendfsync everysec) or a \"save\" rule such as \"save 60 1\" "+
		"in redis.conf (a CONFIG SET lasts until Redis restarts unless followed by CONFIG REWRITE), "+
		"or set allow_volatile_redis = true in [entitlements.redis] to accept losing budgets",
		ErrVolatile, aof, save)
}
