package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary stand in for the bench binary when the
// stack re-executes itself as a gateway process (-serve=...).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && strings.HasPrefix(os.Args[1], "-serve=") {
		if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestScenariosEndToEnd starts the whole stack (engine, neuron, bare chain
// and cortex in their processes) and runs every scenario briefly. It
// checks what does not depend on timing: every target answers without
// errors, every stream reaches the client with the engine's chunk count,
// the open streams are all served, and a cold model is loaded once for
// all its concurrent requests.
func TestScenariosEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes and serves load for a few seconds")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	st, err := startStack(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.close)
	g := newLoadGen(64)
	t.Cleanup(g.transport.CloseIdleConnections)
	if err := st.ready(ctx, g); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	b := &bench{
		cfg: config{
			duration: 200 * time.Millisecond, warmup: 100 * time.Millisecond, rounds: 1,
			concurrency: []int{4}, streamConc: []int{2}, rate: 100,
			streams: 20, slowTokens: 2, cold: 10,
		},
		st: st, g: g, log: &log,
	}
	b.closed(ctx)
	b.open(ctx)
	b.stream(ctx)
	b.openStreams(ctx)
	b.coldLoad(ctx)
	if ctx.Err() != nil {
		t.Fatalf("scenarios did not finish: %v\n%s", ctx.Err(), log.String())
	}

	got := make(map[string]float64)
	for _, m := range b.rep.metrics {
		got[fmt.Sprintf("%s/%s/%s", m.scenario, m.target, m.name)] = m.value
	}
	for _, tg := range st.targets() {
		for _, key := range []string{"closed/%s/errors", "open/%s/errors", "open/%s/dropped", "stream/%s/errors"} {
			k := fmt.Sprintf(key, tg.name)
			if v, ok := got[k]; !ok || v != 0 {
				t.Errorf("%s = %v (present %v), want 0", k, v, ok)
			}
		}
		for _, key := range []string{"closed/%s/requests_per_second", "stream/%s/streams"} {
			k := fmt.Sprintf(key, tg.name)
			if got[k] <= 0 {
				t.Errorf("%s = %v, want > 0", k, got[k])
			}
		}
		if k := "stream/" + tg.name + "/chunks_ok"; got[k] != 1 {
			t.Errorf("%s = %v, want 1: the client's chunk count differs from the engine's", k, got[k])
		}
	}
	for _, k := range []string{"streams/chain/served", "streams/cortex/served"} {
		if got[k] != 20 {
			t.Errorf("%s = %v, want 20", k, got[k])
		}
	}
	for k, want := range map[string]float64{"cold/cortex/served": 10, "cold/cortex/neuron_load_requests": 1, "cold/cortex/engine_loads": 1} {
		if got[k] != want {
			t.Errorf("%s = %v, want %v", k, got[k], want)
		}
	}
	if runtime.GOOS == "linux" && got["closed/cortex/gateway_rss"] <= 0 {
		t.Errorf("no gateway RSS for cortex")
	}
	var md bytes.Buffer
	if err := b.rep.markdown(&md); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(md.String(), "### "); n != 5 {
		t.Errorf("%d tables, want 5:\n%s", n, md.String())
	}
	if t.Failed() {
		t.Logf("report:\n%s\nprogress:\n%s", md.String(), log.String())
	}
}
