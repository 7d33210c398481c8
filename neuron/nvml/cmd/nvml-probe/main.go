// Command nvml-probe prints what the NVML discoverer sees on this host: the
// result of Discover and of one Sample, as one JSON object on stdout. It is
// a check for real GPU machines; on a host without a driver it prints no
// devices and the reason.
//
// Build with CGO_CFLAGS=-Wno-deprecated-declarations to quiet the warnings
// of go-nvml's header.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/helexa-ai/helexa-go/neuron"
	"github.com/helexa-ai/helexa-go/neuron/nvml"
)

func main() {
	timeout := flag.Duration("timeout", 30*time.Second, "give up after this long")
	flag.Parse()
	if err := run(*timeout); err != nil {
		fmt.Fprintln(os.Stderr, "nvml-probe:", err)
		os.Exit(1)
	}
}

func run(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()

	d := nvml.New(nvml.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, nil))))
	disc, err := d.Discover(ctx)
	if err != nil {
		return fmt.Errorf("discover: %w", err)
	}
	start := time.Now()
	samples, err := d.Sample(ctx)
	if err != nil {
		return fmt.Errorf("sample: %w", err)
	}
	took := time.Since(start)
	if err := d.Close(); err != nil {
		return err
	}

	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		Discovery neuron.Discovery      `json:"discovery"`
		Sample    []neuron.DeviceSample `json:"sample"`
		SampleUS  int64                 `json:"sample_us"`
	}{disc, samples, took.Microseconds()})
}
