package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/cortex/metering"
)

// meterCloseTimeout bounds the writing of the last meter records at exit.
const meterCloseTimeout = 10 * time.Second

// newMetering returns the gateway options of the metrics registry and the
// [metering] table: a registry with the Go and process collectors, the
// meter file (a FileSink, whose counters of records written and dropped
// are registered there) and the opt-in per-account counters. The returned
// function closes the meter file; call it once the servers have stopped.
func newMetering(cfg cortex.MeteringConfig, logger *slog.Logger) ([]cortex.GatewayOption, func(), error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var meters []metering.Meter
	closeSink := func() {}
	if cfg.File != "" {
		sink, err := metering.NewFileSink(cfg.File, append(cfg.FileSinkOptions(), metering.WithLogger(logger))...)
		if err != nil {
			return nil, nil, err
		}
		closeSink = func() {
			ctx, cancel := context.WithTimeout(context.Background(), meterCloseTimeout)
			defer cancel()
			if err := sink.Close(ctx); err != nil {
				logger.Error("cortex: closing the meter file", "file", cfg.File, "err", err, "dropped", sink.Dropped())
			}
		}
		if err := reg.Register(sink.Collector()); err != nil {
			closeSink()
			return nil, nil, err
		}
		meters = append(meters, sink)
	}
	if cfg.PerAccountMetrics {
		spend, err := metering.NewAccountSpend(reg, metering.WithMaxAccounts(cfg.MaxAccounts))
		if err != nil {
			closeSink()
			return nil, nil, err
		}
		meters = append(meters, spend)
	}
	opts := []cortex.GatewayOption{cortex.WithRegistry(reg)}
	if len(meters) > 0 {
		opts = append(opts, cortex.WithMeter(metering.Multi(meters...)))
	}
	return opts, closeSink, nil
}
