package metering_test

import (
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/helexa-ai/helexa-go/cortex/metering"
	"github.com/helexa-ai/helexa-go/entitlements"
)

// goldenRecord and goldenLine are one record and its exact JSON form.
var (
	goldenRecord = metering.Record{
		Time:             time.Date(2025, 1, 2, 3, 4, 5, 6, time.FixedZone("CET", 3600)),
		RequestID:        "req-1",
		AccountID:        "acme",
		KeyID:            "ci",
		Model:            "llama-3-8b",
		Neuron:           "gpu-a",
		Route:            "chat.completions",
		Stream:           true,
		PromptTokens:     12,
		CompletionTokens: 34,
		CachedTokens:     5,
		Reserved:         1000,
		Settled:          46,
		Unit:             entitlements.UnitTokens,
		Duration:         1234567890 * time.Nanosecond,
		TTFT:             250 * time.Millisecond,
		Status:           200,
		Outcome:          metering.OutcomeOK,
		UsageSource:      metering.UsageEngine,
		SettleState:      metering.SettleSettled,
	}
	goldenLine = `{"time":"2025-01-02T02:04:05.000000006Z","request_id":"req-1","account_id":"acme",` +
		`"key_id":"ci","model":"llama-3-8b","neuron":"gpu-a","route":"chat.completions","stream":true,` +
		`"prompt_tokens":12,"completion_tokens":34,"cached_tokens":5,"reserved":1000,"settled":46,` +
		`"unit":"tokens","duration_ms":1234.567,"ttft_ms":250,"status":200,"outcome":"ok",` +
		`"usage_source":"engine","settle_state":"settled"}`
)

func TestRecordMarshalJSON(t *testing.T) {
	t.Parallel()
	usd := goldenRecord
	usd.RequestID = ""
	usd.Unit = entitlements.UnitMicroUSD
	usd.Outcome = metering.OutcomeClientGone
	usd.UsageSource = metering.UsageEstimated
	tests := []struct {
		name string
		in   metering.Record
		want string
	}{
		{name: "golden", in: goldenRecord, want: goldenLine},
		{
			name: "usd, no request id",
			in:   usd,
			want: `{"time":"2025-01-02T02:04:05.000000006Z","account_id":"acme",` +
				`"key_id":"ci","model":"llama-3-8b","neuron":"gpu-a","route":"chat.completions","stream":true,` +
				`"prompt_tokens":12,"completion_tokens":34,"cached_tokens":5,"reserved":1000,"settled":46,` +
				`"unit":"usd","duration_ms":1234.567,"ttft_ms":250,"status":200,"outcome":"client_gone",` +
				`"usage_source":"estimated","settle_state":"settled"}`,
		},
		{
			name: "settle record",
			in: metering.Record{
				Time: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), AccountID: "acme", KeyID: "ci", Model: "m",
				Route: "chat.completions", Reserved: 100, Settled: 46, Status: 200, Outcome: metering.OutcomeOK,
				SettleState: metering.SettleSettled, Kind: metering.KindSettle, SettleID: "s-1",
			},
			want: `{"time":"2025-01-02T03:04:05Z","account_id":"acme","key_id":"ci","model":"m","neuron":"",` +
				`"route":"chat.completions","stream":false,"prompt_tokens":0,"completion_tokens":0,"cached_tokens":0,` +
				`"reserved":100,"settled":46,"unit":"tokens","duration_ms":0,"ttft_ms":0,"status":200,` +
				`"outcome":"ok","usage_source":"","settle_state":"settled","kind":"settle","settle_id":"s-1"}`,
		},
		{
			name: "zero",
			in:   metering.Record{},
			want: `{"time":"0001-01-01T00:00:00Z","account_id":"","key_id":"","model":"","neuron":"",` +
				`"route":"","stream":false,"prompt_tokens":0,"completion_tokens":0,"cached_tokens":0,` +
				`"reserved":0,"settled":0,"unit":"tokens","duration_ms":0,"ttft_ms":0,"status":0,` +
				`"outcome":"","usage_source":""}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := json.Marshal(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(string(got), tt.want); diff != "" {
				t.Errorf("json (-got +want):\n%s", diff)
			}
		})
	}
}

// TestRecordFieldsHoldNoSecret pins the set of JSON fields: a field that
// could carry an API key or a request body must be a deliberate change.
func TestRecordFieldsHoldNoSecret(t *testing.T) {
	t.Parallel()
	var m map[string]any
	if err := json.Unmarshal([]byte(goldenLine), &m); err != nil {
		t.Fatal(err)
	}
	var got []string
	for k := range m {
		got = append(got, k)
	}
	want := []string{
		"account_id", "cached_tokens", "completion_tokens", "duration_ms", "key_id", "model",
		"neuron", "outcome", "prompt_tokens", "request_id", "reserved", "route", "settled",
		"settle_state", "status", "stream", "time", "ttft_ms", "unit", "usage_source",
	}
	if diff := cmp.Diff(got, want, cmpSorted); diff != "" {
		t.Errorf("fields (-got +want):\n%s", diff)
	}
}

func TestRecordUnmarshalJSON(t *testing.T) {
	t.Parallel()
	wantGolden := goldenRecord
	wantGolden.Time = wantGolden.Time.UTC()
	wantGolden.Duration = 1234567 * time.Microsecond
	tests := []struct {
		name    string
		in      string
		want    metering.Record
		wantErr bool
	}{
		{name: "golden", in: goldenLine, want: wantGolden},
		{name: "usd", in: `{"unit":"usd","settled":7}`, want: metering.Record{Unit: entitlements.UnitMicroUSD, Settled: 7}},
		{name: "no unit reads as tokens", in: `{"prompt_tokens":3}`, want: metering.Record{PromptTokens: 3}},
		{name: "unknown outcome kept", in: `{"outcome":"later"}`, want: metering.Record{Outcome: "later"}},
		{
			name: "pending, then its settle record",
			in:   `{"settled":0,"settle_state":"pending","settle_id":"s-9"}`,
			want: metering.Record{SettleState: metering.SettlePending, SettleID: "s-9"},
		},
		{name: "settle record", in: `{"kind":"settle","settle_state":"failed"}`, want: metering.Record{Kind: metering.KindSettle, SettleState: metering.SettleFailed}},
		{name: "huge duration saturates", in: `{"duration_ms":1e300,"ttft_ms":-1e300}`, want: metering.Record{Duration: math.MaxInt64, TTFT: math.MinInt64}},
		{name: "sub-microsecond rounds", in: `{"duration_ms":0.0006}`, want: metering.Record{Duration: time.Microsecond}},
		{name: "unknown unit", in: `{"unit":"gbp"}`, wantErr: true},
		{name: "not json", in: `{"unit":`, wantErr: true},
		{name: "wrong type", in: `{"status":"ok"}`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var got metering.Record
			err := json.Unmarshal([]byte(tt.in), &got)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("record (-got +want):\n%s", diff)
			}
		})
	}
}

// FuzzRecordJSON checks that any record that parses encodes to a line that
// parses back to the same encoding.
func FuzzRecordJSON(f *testing.F) {
	f.Add([]byte(goldenLine))
	f.Add([]byte(`{"duration_ms":1e300,"ttft_ms":-0.0004,"unit":"usd"}`))
	f.Add([]byte(`{"time":"0000-01-01T00:30:00+01:00"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var r metering.Record
		if json.Unmarshal(b, &r) != nil {
			return
		}
		out, err := json.Marshal(r)
		if err != nil {
			return // a time that is out of range once in UTC
		}
		var r2 metering.Record
		if err := json.Unmarshal(out, &r2); err != nil {
			t.Fatalf("re-parse of %s: %v", out, err)
		}
		out2, err := json.Marshal(r2)
		if err != nil {
			t.Fatal(err)
		}
		if string(out) != string(out2) {
			t.Fatalf("unstable encoding:\n%s\n%s", out, out2)
		}
	})
}
