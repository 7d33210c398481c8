package metering_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/helexa-ai/helexa-go/cortex/metering"
	"github.com/prometheus/client_golang/prometheus"
)

// A gateway meters to a file and, opt-in, to per-account Prometheus
// counters.
func ExampleFileSink() {
	dir, err := os.MkdirTemp("", "metering-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "meter.jsonl")

	sink, err := metering.NewFileSink(path, metering.WithMaxBytes(10<<20), metering.WithMaxBackups(3))
	if err != nil {
		panic(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(sink.Collector())
	spend, err := metering.NewAccountSpend(reg, metering.WithMaxAccounts(100))
	if err != nil {
		panic(err)
	}
	meter := metering.Multi(sink, spend) // what the gateway's WithMeter takes

	// The gateway calls Record once per finished request.
	meter.Record(metering.Record{
		Time:             time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC),
		AccountID:        "acme",
		KeyID:            "ci",
		Model:            "llama-3-8b",
		Neuron:           "gpu-a",
		Route:            "chat.completions",
		PromptTokens:     12,
		CompletionTokens: 30,
		Reserved:         1036,
		Settled:          42,
		Duration:         850 * time.Millisecond,
		TTFT:             120 * time.Millisecond,
		Status:           200,
		Outcome:          metering.OutcomeOK,
		UsageSource:      metering.UsageEngine,
	})

	// At shutdown, after the HTTP server has stopped.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := sink.Close(ctx); err != nil {
		panic(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		panic(err)
	}
	fmt.Print(string(b))
	fmt.Println("written:", sink.Written(), "dropped:", sink.Dropped())
	// Output:
	// {"time":"2025-06-01T12:00:00Z","account_id":"acme","key_id":"ci","model":"llama-3-8b","neuron":"gpu-a","route":"chat.completions","stream":false,"prompt_tokens":12,"completion_tokens":30,"cached_tokens":0,"reserved":1036,"settled":42,"unit":"tokens","duration_ms":850,"ttft_ms":120,"status":200,"outcome":"ok","usage_source":"engine"}
	// written: 1 dropped: 0
}

// Func turns a function into a Meter, here to count outcomes in a test.
func ExampleFunc() {
	outcomes := map[metering.Outcome]int{}
	m := metering.Func(func(r metering.Record) { outcomes[r.Outcome]++ }) // one goroutine only
	m.Record(metering.Record{Outcome: metering.OutcomeOK})
	m.Record(metering.Record{Outcome: metering.OutcomeClientGone})
	m.Record(metering.Record{Outcome: metering.OutcomeOK})
	fmt.Println(outcomes)
	// Output: map[client_gone:1 ok:2]
}
