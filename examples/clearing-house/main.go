// Command clearing-house runs one clearing house and two gateways that
// spend one account from it: the house (entitlements/house's Handler over
// an in-memory Local ledger) holds the account "shared" with a cap of
// 2,000 tokens; each gateway is a cortex.Gateway whose Provider is a
// house.Client (the second with credit grants, journaled), over one in-process
// neuron of the simulated engine. Requests alternate between the
// gateways until the cap refuses them; the cap holds across both.
//
//	go run ./examples/clearing-house
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/helexa-ai/helexa-go/catalogue"
	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/entitlements/house"
	"github.com/helexa-ai/helexa-go/neuron"
	"github.com/helexa-ai/helexa-go/neuron/sim"
)

const hardCap = 2_000

func main() {
	if err := run(context.Background(), os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// run serves the house and two gateways, sends requests until the cap
// refuses them, and prints what was spent.
func run(ctx context.Context, out io.Writer) error {
	shared := entitlements.Principal{AccountID: "shared"}
	ledger, err := entitlements.NewLocal(entitlements.Config{Keys: []entitlements.KeyConfig{
		{Key: "sk-shared", AccountID: "shared", HardCap: new(int64(hardCap))},
	}})
	if err != nil {
		return err
	}
	h, err := house.NewHandler(ledger,
		house.WithGateway(house.Gateway{Name: "eu-1", TokenSHA256: entitlements.KeyDigest("token-eu-1")}),
		house.WithGateway(house.Gateway{Name: "us-1", TokenSHA256: entitlements.KeyDigest("token-us-1"), Accounts: []string{"shared"}}))
	if err != nil {
		return err
	}
	houseSrv := httptest.NewServer(h)
	defer houseSrv.Close()

	neuronURL, stopNeuron, err := startNeuron()
	if err != nil {
		return err
	}
	defer stopNeuron()
	// The grants' journal: settles inside a grant are on disk before they
	// are acknowledged, so that a gateway restarted after a crash reports
	// them to the house.
	dir, err := os.MkdirTemp("", "clearing-house")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var bases []string
	for _, g := range []struct {
		token  string
		grants bool
	}{{"token-eu-1", false}, {"token-us-1", true}} {
		var opts []house.ClientOption
		if g.grants {
			opts = append(opts, house.WithGrants(house.GrantConfig{FlushInterval: 50 * time.Millisecond, Journal: filepath.Join(dir, "grants.journal")}))
		}
		c, err := house.NewClient(houseSrv.URL, g.token, opts...)
		if err != nil {
			return err
		}
		defer c.Close(context.Background())
		base, stop, err := startGateway(ctx, neuronURL, c)
		if err != nil {
			return err
		}
		defer stop()
		bases = append(bases, base)
	}

	served, refused := 0, 0
	for i := 0; refused < 4 && i < 1000; i++ {
		switch status, err := chat(ctx, bases[i%2]); {
		case err != nil:
			return err
		case status == http.StatusOK:
			served++
		case status == http.StatusTooManyRequests:
			refused++
		default:
			return fmt.Errorf("gateway %d answered %d", i%2, status)
		}
	}
	s, err := ledger.Snapshot(ctx, shared)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "two gateways served %d requests; the house refused the rest: spent %d of a cap of %d tokens\n", served, s.Spent, hardCap)
	if s.Spent > hardCap {
		return errors.New("the cap did not hold")
	}
	return nil
}

func chat(ctx context.Context, base string) (int, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/chat/completions",
		strings.NewReader(`{"model":"demo-1b","messages":[{"role":"user","content":"Hello!"}],"max_tokens":64}`))
	req.Header.Set("Authorization", "Bearer sk-shared")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// startGateway serves a gateway over the neuron at neuronURL that spends
// from provider, on a free loopback port.
func startGateway(ctx context.Context, neuronURL string, provider entitlements.Provider) (string, func(), error) {
	cat, err := catalogue.New([]catalogue.Model{{ID: "demo-1b", VRAMMB: 2048}}, nil)
	if err != nil {
		return "", nil, err
	}
	gw, err := cortex.NewGateway([]cortex.NeuronConfig{{Name: "gpu-01", Endpoint: neuronURL}}, cat,
		cortex.WithProvider(provider), cortex.WithRequireAuth(true))
	if err != nil {
		return "", nil, err
	}
	if _, err := gw.Poller().(route.Refresher).Refresh(ctx, "gpu-01"); err != nil {
		return "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: gw, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() {
		_ = gw.Shutdown(context.Background())
		_ = srv.Shutdown(context.Background())
	}, nil
}

// startNeuron starts a neuron over the simulated engine, with one 24 GiB
// GPU, on a free loopback port.
func startNeuron() (url string, stop func(), err error) {
	harness, err := sim.NewHarness(sim.Config{})
	if err != nil {
		return "", nil, err
	}
	disc := neuron.NewStaticDiscoverer(neuron.Discovery{Devices: []neuron.Device{{Index: 0, Name: "Simulated GPU", TotalMB: 24576}}})
	agent, err := neuron.NewAgent(harness, disc)
	if err != nil {
		return "", nil, errors.Join(err, harness.Close(context.Background()))
	}
	if err := agent.Start(context.Background()); err != nil {
		return "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, errors.Join(err, agent.Shutdown(context.Background()))
	}
	srv := &http.Server{Handler: agent, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() {
		_ = agent.Shutdown(context.Background())
		_ = srv.Shutdown(context.Background())
	}, nil
}
