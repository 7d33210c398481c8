package cortex_test

import (
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/entitlements"
)

func TestFormatUSD(t *testing.T) {
	t.Parallel()
	for micro, want := range map[int64]string{
		0: "$0.00", 1: "<$0.01", 4_999: "<$0.01", 5_000: "$0.01", 2_500_000: "$2.50",
		12_345_678: "$12.35", -500_000: "-$0.50", -1: "-<$0.01",
		math.MinInt64: "-$9223372036854.78", math.MaxInt64: "$9223372036854.78",
	} {
		if got := cortex.FormatUSD(micro); got != want {
			t.Errorf("FormatUSD(%d) = %q, want %q", micro, got, want)
		}
	}
	tokens := cortex.StatusBudget{Unit: "tokens"}
	if got := tokens.FormatAmount(1_000_000); got != "1000000" {
		t.Errorf("tokens: %q", got)
	}
}

// The admin view of the status page shows a usd budget in dollars and
// cents, not in micro-dollars.
func TestStatusPageShowsDollars(t *testing.T) {
	t.Parallel()
	local, err := entitlements.NewLocal(entitlements.Config{Keys: []entitlements.KeyConfig{
		{Key: "sk-dollars", AccountID: "acme", Unit: "usd", HardCapUSD: new(2.5)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	gw, err := cortex.NewGateway([]cortex.NeuronConfig{{Name: "n1", Endpoint: "http://127.0.0.1:1"}}, nil,
		cortex.WithProvider(local), cortex.WithAdminKeys(entitlements.KeyDigest("sk-admin")),
		cortex.WithStatusBudgets(entitlements.Principal{AccountID: "acme", KeyID: "acme", Unit: entitlements.UnitMicroUSD}))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gw)
	t.Cleanup(srv.Close)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/status?refresh=0", nil)
	req.SetBasicAuth("any", "sk-admin")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	_, budgets, _ := strings.Cut(string(body), `id="budgets"`)
	for _, want := range []string{`<td class="num">$2.50</td>`, `<td class="num">$0.00</td>`} {
		if !strings.Contains(budgets, want) {
			t.Errorf("no %s in the budgets:\n%s", want, budgets)
		}
	}
	if strings.Contains(budgets, "2500000") {
		t.Errorf("the budgets show micro-dollars:\n%s", budgets)
	}
}
