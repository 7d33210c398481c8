package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/cortex/cortextest"
	"github.com/helexa-ai/helexa-go/cortex/metering"
	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/neuron"
)

// With a [metering] table, cortex serve writes one line per request to the
// meter file, complete once it has stopped.
func TestServeMeters(t *testing.T) {
	fleet := cortextest.NewFleet(t, cortextest.Named("gpu-01")...)
	file := filepath.Join(t.TempDir(), "meter.jsonl")
	addr, stop := startServe(t, fleet.Neuron("gpu-01").URL(), fmt.Sprintf(`[entitlements]
require_auth = true
[[entitlements.keys]]
key = "sk-metered"
account_id = "test"
key_id = "ci"
[metering]
file = %q
per_account_metrics = true
`, file))
	status, body := chatOnce(t, addr, "sk-metered")
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	if err := stop(); err != nil {
		t.Fatalf("cortex serve: %v", err)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var r metering.Record
	if err := json.Unmarshal(data, &r); err != nil || strings.Count(string(data), "\n") != 1 {
		t.Fatalf("meter file %q (%v): want one record", data, err)
	}
	if r.AccountID != "test" || r.KeyID != "ci" || r.Outcome != metering.OutcomeOK || r.Settled == 0 || strings.Contains(string(data), "sk-metered") {
		t.Errorf("record %s", data)
	}
}

// The registry of newMetering serves the gateway's metrics, the meter
// file's counters and the per-account counters.
func TestNewMeteringMetrics(t *testing.T) {
	fleet := cortextest.NewFleet(t, cortextest.Spec{Name: "gpu-01", Models: []neuron.LoadSpec{{ModelID: "m", VRAMMB: 100}}})
	file := filepath.Join(t.TempDir(), "meter.jsonl")
	opts, closeMeter, err := newMetering(cortex.MeteringConfig{File: file, PerAccountMetrics: true}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer closeMeter()
	local, err := entitlements.NewLocal(entitlements.Config{Keys: []entitlements.KeyConfig{{Key: "k", AccountID: "acct"}}})
	if err != nil {
		t.Fatal(err)
	}
	gw, err := cortex.NewGateway(fleet.Configs(), nil, append(opts, cortex.WithProvider(local))...)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = gw.Shutdown(t.Context()) }()
	if _, err := gw.Poller().(route.Refresher).Refresh(t.Context(), "gpu-01"); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gw)
	defer srv.Close()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+"/v1/chat/completions",
		strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":2}`))
	req.Header.Set("Authorization", "Bearer k")
	req.Header.Set("Content-Type", "application/json")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	for start := time.Now(); gw.InFlight() != 0; time.Sleep(time.Millisecond) {
		if time.Since(start) > 10*time.Second {
			t.Fatal("the request did not finish")
		}
	}
	w := httptest.NewRecorder()
	gw.MetricsHandler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for _, want := range []string{"helexa_requests_total", "helexa_meter_records_dropped_total 0", `helexa_account_spend_total{account="acct",unit="tokens"}`, "go_goroutines"} {
		if !strings.Contains(w.Body.String(), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
