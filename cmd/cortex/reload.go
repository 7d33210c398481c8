package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/helexa-ai/helexa-go/catalogue"
	"github.com/helexa-ai/helexa-go/cortex"
)

// reloadTimeout bounds a reload started by SIGHUP: the seeding of the keys
// into a ledger and the first poll of the neurons it adds.
const reloadTimeout = 30 * time.Second

// reloader reads cortex.toml again into the serving gateway, on SIGHUP
// and on POST /admin/reload: the keys of [entitlements] (through the
// provider's keySetter), the catalogue, the neurons and the settings of
// cortex.Config.ReloadOptions. What else changed is logged as needing a
// restart (cortex.Config.RestartNeeded). A configuration that does not
// parse or validate changes nothing.
type reloader struct {
	path    string
	started cortex.Config // what the daemon started with
	keys    keySetter
	log     *slog.Logger
	gw      *cortex.Gateway // set before serving

	mu sync.Mutex // one reload at a time
}

// reload reads the file and applies it; it returns the settings that need
// a restart, or why nothing was reloaded.
func (r *reloader) reload(ctx context.Context) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cfg, err := cortex.LoadConfig(r.path)
	if err != nil {
		return nil, err
	}
	var cat *catalogue.Catalogue
	if cfg.ModelsConfig != "" {
		if cat, err = catalogue.Load(cfg.ModelsConfig); err != nil {
			return nil, err
		}
	}
	keys, err := cfg.Entitlements.APIKeys() // validated by LoadConfig
	if err != nil {
		return nil, err
	}
	switch {
	case r.keys != nil:
		if err := r.keys(ctx, keys); err != nil {
			return nil, &cortex.ConfigError{File: r.path, Entry: "entitlements.keys", Msg: err.Error()}
		}
	case len(keys) > 0:
		// [house] refuses [[keys]] at load: the clearing house keeps them.
		return nil, &cortex.ConfigError{File: r.path, Entry: "entitlements.keys", Msg: "the keys are kept by the clearing house"}
	}
	if err := r.gw.Reload(ctx, cfg.Neurons, cat, cfg.ReloadOptions()...); err != nil {
		return nil, fmt.Errorf("the keys were reloaded, the rest was not: %w", err)
	}
	restart := r.started.RestartNeeded(cfg)
	r.log.Info("cortex: configuration reloaded", "neurons", len(cfg.Neurons), "models", cat.Len(), "keys", len(keys))
	if len(restart) > 0 {
		r.log.Warn("cortex: changed settings take effect only after a restart", "settings", restart)
	}
	return restart, nil
}

// hangup is the reload of a SIGHUP: its outcome goes to the log.
func (r *reloader) hangup() {
	r.log.Info("cortex: SIGHUP: reloading the configuration", "path", r.path)
	ctx, cancel := context.WithTimeout(context.Background(), reloadTimeout)
	defer cancel()
	if _, err := r.reload(ctx); err != nil {
		r.log.Error("cortex: reload refused; the configuration in force is unchanged", "path", r.path, "err", err)
	}
}
