package catalogue_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/helexa-ai/helexa-go/catalogue"
)

func TestMicroUSD(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cost    catalogue.Cost
		in, out int64
		want    int64
	}{
		{name: "one token at $1 per 1M", cost: catalogue.Cost{Input: 1}, in: 1, want: 1},
		{name: "fraction rounds up", cost: catalogue.Cost{Input: 0.15}, in: 1, want: 1},
		{name: "exact decimal price", cost: catalogue.Cost{Input: 0.15}, in: 1000, want: 150},
		{name: "a million each way", cost: catalogue.Cost{Input: 0.15, Output: 0.60}, in: 1_000_000, out: 1_000_000, want: 750_000},
		{name: "rounds the total once", cost: catalogue.Cost{Input: 0.1, Output: 0.1}, in: 5, out: 5, want: 1},
		{name: "rounds up the total", cost: catalogue.Cost{Input: 0.1, Output: 0.2}, in: 7, out: 3, want: 2},
		{name: "tiny price adds up", cost: catalogue.Cost{Output: 0.000001}, out: 1_000_000, want: 1},
		{name: "tiny price still charges", cost: catalogue.Cost{Output: 0.000001}, out: 1, want: 1},
		{name: "free", cost: catalogue.Cost{}, in: 1 << 40, out: 1 << 40, want: 0},
		{name: "no tokens", cost: catalogue.Cost{Input: 3, Output: 15}, want: 0},
		{name: "negative tokens count as zero", cost: catalogue.Cost{Input: 1, Output: 1}, in: -5, out: 2, want: 2},
		{name: "largest exact", cost: catalogue.Cost{Input: 1}, in: math.MaxInt64, want: math.MaxInt64},
		{name: "saturates", cost: catalogue.Cost{Input: 2}, in: math.MaxInt64, want: math.MaxInt64},
		{name: "saturates at the top price", cost: catalogue.Cost{Input: catalogue.MaxPrice, Output: catalogue.MaxPrice}, in: math.MaxInt64, out: math.MaxInt64, want: math.MaxInt64},
		{name: "NaN price is the top price", cost: catalogue.Cost{Input: math.NaN()}, in: 1, want: 1_000_000_000},
		{name: "infinite price is the top price", cost: catalogue.Cost{Output: math.Inf(1)}, out: 2, want: 2_000_000_000},
		{name: "negative price is free", cost: catalogue.Cost{Input: -1}, in: 1000, want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.cost.MicroUSD(tt.in, tt.out); got != tt.want {
				t.Errorf("%+v.MicroUSD(%d, %d) = %d; want %d", tt.cost, tt.in, tt.out, got, tt.want)
			}
		})
	}
}

func TestCharge(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cost catalogue.Cost
		in   catalogue.Usage
		want int64
	}{
		{
			name: "cache prices",
			cost: catalogue.Cost{Input: 3, Output: 15, CacheRead: ptr(0.3), CacheWrite: ptr(3.75)},
			in:   catalogue.Usage{Input: 1000, Output: 100, CacheRead: 10_000, CacheWrite: 2000},
			want: 3000 + 1500 + 3000 + 7500,
		},
		{
			name: "cache defaults to the input price",
			cost: catalogue.Cost{Input: 2, Output: 4},
			in:   catalogue.Usage{Input: 10, CacheRead: 20, CacheWrite: 30},
			want: 120,
		},
		{
			name: "free cache reads",
			cost: catalogue.Cost{Input: 2, CacheRead: ptr(0.0)},
			in:   catalogue.Usage{Input: 10, CacheRead: 1 << 50},
			want: 20,
		},
		{
			name: "rounds once over all four",
			cost: catalogue.Cost{Input: 0.25, Output: 0.25, CacheRead: ptr(0.25), CacheWrite: ptr(0.25)},
			in:   catalogue.Usage{Input: 1, Output: 1, CacheRead: 1, CacheWrite: 1},
			want: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.cost.Charge(tt.in); got != tt.want {
				t.Errorf("Charge(%+v) = %d; want %d", tt.in, got, tt.want)
			}
		})
	}
}

func TestModelMicroUSD(t *testing.T) {
	t.Parallel()
	if got, ok := (catalogue.Model{ID: "unpriced"}).MicroUSD(100, 100); ok || got != 0 {
		t.Errorf("unpriced MicroUSD = %d, %v; want 0, false", got, ok)
	}
	if got, ok := (catalogue.Model{ID: "free", Cost: &catalogue.Cost{}}).MicroUSD(100, 100); !ok || got != 0 {
		t.Errorf("free MicroUSD = %d, %v; want 0, true", got, ok)
	}
	if got, ok := (catalogue.Model{ID: "priced", Cost: &catalogue.Cost{Input: 1, Output: 2}}).MicroUSD(100, 100); !ok || got != 300 {
		t.Errorf("priced MicroUSD = %d, %v; want 300, true", got, ok)
	}
}

func TestOutputTokensFor(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		output float64
		in     int64
		want   int64
	}{
		{name: "one per micro-dollar", output: 1, in: 100, want: 100},
		{name: "rounding up lets one token through", output: 0.6, in: 1, want: 1},
		{name: "cheap tokens", output: 0.6, in: 6, want: 10},
		{name: "expensive tokens", output: 15, in: 100, want: 6},
		{name: "not enough for one", output: 15, in: 14, want: 0},
		{name: "free output", output: 0, in: 0, want: math.MaxInt64},
		{name: "no budget", output: 1, in: 0, want: 0},
		{name: "negative budget", output: 1, in: -10, want: 0},
		{name: "saturates", output: 0.000000001, in: math.MaxInt64, want: math.MaxInt64},
		{name: "top price", output: catalogue.MaxPrice, in: math.MaxInt64, want: math.MaxInt64 / 1_000_000_000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := catalogue.Cost{Input: 1, Output: tt.output}
			if got := c.OutputTokensFor(tt.in); got != tt.want {
				t.Errorf("Cost{Output: %g}.OutputTokensFor(%d) = %d; want %d", tt.output, tt.in, got, tt.want)
			}
		})
	}
}

// checkOutputTokensFor checks that OutputTokensFor(b) is the most output
// tokens MicroUSD prices at b or less.
func checkOutputTokensFor(t *testing.T, price float64, budget int64) {
	t.Helper()
	c := catalogue.Cost{Output: price}
	n := c.OutputTokensFor(budget)
	if n < 0 {
		t.Fatalf("Cost{Output: %g}.OutputTokensFor(%d) = %d < 0", price, budget, n)
	}
	if cost := c.MicroUSD(0, n); cost > max(budget, 0) {
		t.Fatalf("Cost{Output: %g}: OutputTokensFor(%d) = %d, which cost %d", price, budget, n, cost)
	}
	if n < math.MaxInt64 {
		// A saturated price (math.MaxInt64) may understate the real one.
		if cost := c.MicroUSD(0, n+1); cost <= budget && cost != math.MaxInt64 {
			t.Fatalf("Cost{Output: %g}: OutputTokensFor(%d) = %d, but %d tokens cost only %d", price, budget, n, n+1, cost)
		}
	}
}

func TestOutputTokensForAgreesWithMicroUSD(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	prices := []float64{0.000000001, 0.01, 0.15, 0.6, 1, 3, 15, 75, 1234.5678, catalogue.MaxPrice}
	for range 200 {
		prices = append(prices, math.Round(r.Float64()*r.Float64()*100*1e6)/1e6)
	}
	budgets := []int64{0, 1, 2, 999, 1_000_000, math.MaxInt64 / 1_000_000_000, math.MaxInt64}
	for range 50 {
		budgets = append(budgets, r.Int64N(1<<40))
	}
	for _, p := range prices {
		for _, b := range budgets {
			checkOutputTokensFor(t, p, b)
		}
	}
}

func BenchmarkMicroUSD(b *testing.B) {
	c := catalogue.Cost{Input: 0.15, Output: 0.6, CacheRead: ptr(0.075)}
	b.ReportAllocs()
	for b.Loop() {
		c.Charge(catalogue.Usage{Input: 1234, Output: 567, CacheRead: 8910})
	}
}
