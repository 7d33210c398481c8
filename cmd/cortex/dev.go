package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/helexa-ai/helexa-go/catalogue"
	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/internal/hangup"
	"github.com/helexa-ai/helexa-go/internal/httpx"
	"github.com/helexa-ai/helexa-go/neuron"
	"github.com/helexa-ai/helexa-go/neuron/sim"
)

// The dev stack's fixed parts.
const (
	devNeuron  = "gpu-01" // the name testdata/models.toml pins on
	devKey     = "sk-helexa-dev"
	devAccount = "demo"
	devBudget  = 1_000_000 // tokens, a balance
	devGPUMB   = 24576     // each of the two simulated GPUs
	// devLedger is the default ledger file of dev mode, in the working
	// directory, so that the demo budget survives a restart.
	devLedger = "helexa-dev-ledger"
)

// devSim is the simulated engine of dev mode: a half-second load, then
// 400 tokens a second (a small model on one GPU: the 1B model of the curl
// command does more on any recent GPU) after 50 ms to the first token.
// Answers end by themselves at realistic chat lengths (sim.Config's
// AnswerTokens), so that the printed curl, whose answer is 401 tokens,
// answers in about a second.
var devSim = sim.Config{LoadTime: 500 * time.Millisecond, TTFT: 50 * time.Millisecond, TokensPerSecond: 400}

// devConfig is what "cortex dev" starts.
type devConfig struct {
	listen, metricsListen string
	models                string // path of models.toml
	ledger                string // path of the ledger file; "": in memory
	sim                   sim.Config
	logger                *slog.Logger
	access                *slog.Logger // both daemons' access log; nil: none
}

// devStack is a running dev stack: an in-process neuron over the simulated
// engine, and a gateway over it.
type devStack struct {
	*servers
	agent     *neuron.Agent
	neuronSrv *http.Server
	neuronURL string
	model     string // the model of the curl command
	ledger    string // path of the ledger file, "" in memory
	local     *entitlements.Local
}

// runDev is "cortex dev".
func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	hup := hangup.Catch()
	defer hup.Stop()
	fs := flag.NewFlagSet("cortex dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", cortex.DefaultListen, "address of the API")
	metrics := fs.String("metrics-listen", cortex.DefaultMetricsListen, "address of /metrics")
	models := fs.String("models", "testdata/models.toml", "path of the models.toml catalogue")
	ledger := fs.String("ledger", devLedger, "ledger file keeping the demo budget across restarts (\"\": in memory)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	hup.Handle(func() { logger.Warn("cortex: SIGHUP ignored: dev mode has no configuration file to reload") })
	d, err := startDev(devConfig{
		listen: *listen, metricsListen: *metrics, models: *models, ledger: *ledger, logger: logger,
		sim: devSim,

		// The access log is at info while the rest of dev mode's log
		// stays at warn: a line per request, from the gateway and from
		// the neuron, with the request id that ties them together.
		access: slog.New(slog.NewTextHandler(stderr, nil)),
	})
	if err != nil {
		return err
	}
	d.printIntro(stdout)
	err = serveUntil(ctx, d.failed(), func(ctx context.Context) error {
		fmt.Fprintln(stdout, "cortex dev: shutting down: draining the requests in flight, then stopping the neuron")
		return d.shutdown(ctx)
	}, logger)
	if err != nil {
		fmt.Fprintln(stdout, "cortex dev: stopped with an error")
		return err
	}
	fmt.Fprintln(stdout, "cortex dev: stopped")
	return nil
}

// startDev starts the dev stack. Call shutdown to stop it.
func startDev(cfg devConfig) (d *devStack, err error) {
	cat, err := catalogue.Load(cfg.models)
	if err != nil {
		return nil, fmt.Errorf("%w (run cortex dev from the repository root, or pass --models)", err)
	}
	if cat.Len() == 0 {
		return nil, fmt.Errorf("%s has no models", cfg.models)
	}
	// Bind before starting the neuron, so that a busy port fails at once.
	lns, err := listen(cfg.listen, cfg.metricsListen)
	if err != nil {
		return nil, err
	}
	defer lns.close() // a no-op once the servers own them
	harness, err := sim.NewHarness(cfg.sim)
	if err != nil {
		return nil, err
	}
	disc := neuron.NewStaticDiscoverer(neuron.Discovery{Hostname: devNeuron, Devices: []neuron.Device{
		{Index: 0, Name: "Simulated GPU", UUID: "GPU-dev-0", TotalMB: devGPUMB},
		{Index: 1, Name: "Simulated GPU", UUID: "GPU-dev-1", TotalMB: devGPUMB},
	}})
	agent, err := neuron.NewAgent(harness, disc, neuron.WithLogger(cfg.logger), neuron.WithAccessLog(cfg.access),
		neuron.WithDrainTimeout(5*time.Second))
	if err != nil {
		return nil, errors.Join(err, harness.Close(context.Background()))
	}
	d = &devStack{agent: agent}
	defer func() {
		if err != nil {
			err = errors.Join(err, d.shutdown(context.Background()))
		}
	}()
	if err := agent.Start(context.Background()); err != nil {
		return d, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return d, err
	}
	d.neuronURL = "http://" + ln.Addr().String()
	d.neuronSrv = httpx.NewServer(agent, slog.NewLogLogger(cfg.logger.Handler(), slog.LevelWarn))
	go func() { _ = d.neuronSrv.Serve(ln) }()

	ecfg := entitlements.Config{RequireAuth: true, Keys: []entitlements.KeyConfig{
		{Key: devKey, AccountID: devAccount, HardCap: new(int64(devBudget))},
	}}
	var local *entitlements.Local
	if cfg.ledger != "" {
		ecfg.Local = &entitlements.LocalConfig{Path: cfg.ledger}
		local, err = entitlements.OpenLocal(ecfg, entitlements.WithLogger(cfg.logger))
		if err != nil {
			return d, fmt.Errorf("--ledger: %w", err)
		}
		d.local, d.ledger = local, cfg.ledger
	} else if local, err = entitlements.NewLocal(ecfg); err != nil {
		return d, err
	}
	// The status page is public in dev mode; the demo key is also the
	// admin key, which shows its budget there.
	gw, err := cortex.NewGateway([]cortex.NeuronConfig{{Name: devNeuron, Endpoint: d.neuronURL}}, cat,
		cortex.WithProvider(local), cortex.WithRequireAuth(true), cortex.WithLogger(cfg.logger), cortex.WithAccessLog(cfg.access),
		cortex.WithPublicStatus(true), cortex.WithAdminKeys(entitlements.KeyDigest(devKey)),
		cortex.WithStatusBudgets(entitlements.Principal{AccountID: devAccount, KeyID: devAccount}),
		cortex.WithPollerOptions(route.WithInterval(time.Second)))
	if err != nil {
		return d, err
	}
	d.servers = startServers(gw, lns, cfg.logger)
	d.model = devModel(cat)
	return d, nil
}

// devModel is the model of the curl command: the first one the simulated
// engine is meant for (engine "sim"), else the smallest.
func devModel(cat *catalogue.Catalogue) string {
	models := cat.Models()
	best := models[0]
	for _, m := range models {
		if m.Engine == "sim" {
			return m.ID
		}
		if m.VRAMMB < best.VRAMMB {
			best = m
		}
	}
	return best.ID
}

// host is the host:port of the API a client on this machine can use.
func (d *devStack) host() string {
	host := d.apiAddr.String()
	if tcp, ok := d.apiAddr.(*net.TCPAddr); ok && tcp.IP.IsUnspecified() {
		host = net.JoinHostPort("127.0.0.1", fmt.Sprint(tcp.Port))
	}
	return host
}

// curl is a command that works as printed against the running stack.
func (d *devStack) curl() string {
	host := d.host()
	body := `{"model":"` + d.model + `","messages":[{"role":"user","content":"Hello!"}]}`
	return "curl -sS http://" + host + "/v1/chat/completions -H 'Authorization: Bearer " + devKey +
		"' -H 'Content-Type: application/json' -d '" + body + "'"
}

func (d *devStack) printIntro(w io.Writer) {
	metrics := strings.Replace(d.metAddr.String(), "0.0.0.0", "127.0.0.1", 1)
	fmt.Fprintf(w, `cortex dev (version %s)
  gateway  http://%s  (API key %s, account %q with %d tokens)
  status   http://%s/status  (admin view: user any, password %s)
  metrics  http://%s/metrics
  neuron   %s at %s: simulated engine, two %d MiB GPUs

%s
Try it (the first request loads the model):

%s

Ctrl-C stops everything.
`, version, d.apiAddr, devKey, devAccount, devBudget, d.host(), devKey, metrics, devNeuron, d.neuronURL, devGPUMB, d.ledgerLine(), d.curl())
}

// ledgerLine says where the demo budget is kept.
func (d *devStack) ledgerLine() string {
	if d.ledger == "" {
		return "  budgets  in memory (--ledger FILE keeps them)\n"
	}
	return "  budgets  kept in " + d.ledger + " across restarts (delete it for a fresh budget)\n"
}

// shutdown stops the gateway (draining), then the neuron, then closes the
// ledger file.
func (d *devStack) shutdown(ctx context.Context) error {
	var errs []error
	if d.servers != nil {
		errs = append(errs, d.servers.shutdown(ctx))
	}
	if d.neuronSrv != nil {
		errs = append(errs, d.agent.Shutdown(ctx), d.neuronSrv.Shutdown(ctx))
	} else if d.agent != nil {
		errs = append(errs, d.agent.Shutdown(ctx))
	}
	if d.local != nil {
		errs = append(errs, d.local.Close())
	}
	return errors.Join(errs...)
}
