package main

import (
	"log/slog"
	"reflect"

	"github.com/helexa-ai/helexa-go/neuron"
	"github.com/helexa-ai/helexa-go/neuron/engine"
)

// reload reads neuron.toml at path again (on SIGHUP) and applies what can
// change while the neuron serves: the [[engines]] templates with
// default_engine, and the [admission] limits. The rest of the file is
// compared with started, what the daemon started with, and what changed is
// logged as needing a restart. A file that does not parse or validate
// changes nothing.
func reload(path string, started neuron.Config, agent *neuron.Agent, harness *engine.Harness, logger *slog.Logger) {
	logger.Info("neuron: SIGHUP: reloading the configuration", "path", path)
	cfg, err := neuron.LoadConfig(path)
	if err == nil {
		err = harness.SetEngines(cfg.Engines, cfg.DefaultEngine)
	}
	if err == nil {
		err = agent.SetAdmission(cfg.Admission)
	}
	if err != nil {
		logger.Error("neuron: reload refused; the configuration in force is unchanged", "path", path, "err", err)
		return
	}
	logger.Info("neuron: configuration reloaded", "engines", len(cfg.Engines), "admission", cfg.Admission)
	if restart := restartNeeded(started, cfg); len(restart) > 0 {
		logger.Warn("neuron: changed settings take effect only after a restart", "settings", restart)
	}
}

// restartNeeded names the settings of neuron.toml that differ between a
// and b and that a reload does not apply.
func restartNeeded(a, b neuron.Config) []string {
	var out []string
	for _, f := range []struct {
		name string
		a, b any
	}{
		{"listen", a.Listen, b.Listen},
		{"advertise_url", a.AdvertiseURL, b.AdvertiseURL},
		{"token", a.Token, b.Token},
		{"discovery", a.Discovery, b.Discovery},
		{"default_models", a.DefaultModels, b.DefaultModels},
		{"drain_timeout", a.DrainTimeout, b.DrainTimeout},
	} {
		if !reflect.DeepEqual(f.a, f.b) {
			out = append(out, f.name)
		}
	}
	return out
}
