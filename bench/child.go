package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/http/pprof"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/helexa-ai/helexa-go/catalogue"
	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/entitlements"
)

// This file is the gateway process: the bench binary re-executed with
// -serve, so that the resident memory of a gateway is its own and not the
// load generator's. It serves one gateway (cortex, or the first hop of the
// bare chain) on a loopback port, and a debug listener with /debug/stats,
// /debug/pprof/ and, for cortex, /metrics. It prints its addresses as one
// JSON line on stdout and serves until its stdin closes (the parent exits
// or stops it).

// childAddrs is the line a gateway process prints when it is ready.
type childAddrs struct {
	API   string `json:"api"`
	Debug string `json:"debug"`
}

// childStats is GET /debug/stats of a gateway process.
type childStats struct {
	Goroutines int `json:"goroutines"`
}

// serveChild runs a gateway process; kind is "cortex" or "proxy".
func serveChild(kind string, args []string, stdout io.Writer, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench -serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	upstream := fs.String("upstream", "", "URL of the neuron (cortex) or of the next hop (proxy)")
	models := fs.String("models", "", "models.toml of the cortex catalogue")
	key := fs.String("key", "", "the API key cortex accepts")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *upstream == "" {
		return errors.New("-upstream is required")
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	errLog := slog.NewLogLogger(logger.Handler(), slog.LevelWarn)
	debug := http.NewServeMux()
	debug.HandleFunc("GET /debug/stats", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(childStats{Goroutines: runtime.NumGoroutine()})
	})
	debug.HandleFunc("/debug/pprof/", pprof.Index)
	debug.HandleFunc("/debug/pprof/profile", pprof.Profile)
	debug.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	debug.HandleFunc("/debug/pprof/trace", pprof.Trace)

	var (
		api  http.Handler
		stop func(context.Context) error
	)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	switch kind {
	case "cortex":
		gw, err := newCortex(*upstream, *models, *key, logger)
		if err != nil {
			return err
		}
		// Poll the neuron once before serving, as cmd/cortex does.
		if r, ok := gw.Poller().(route.Refresher); ok {
			if _, err := r.Refresh(ctx, benchNeuron); err != nil {
				return fmt.Errorf("first poll of the neuron: %w", err)
			}
		}
		wg.Go(func() { _ = gw.Run(ctx) })
		debug.Handle("GET /metrics", gw.MetricsHandler())
		api, stop = gw, gw.Shutdown
	case "proxy":
		u, err := url.Parse(*upstream)
		if err != nil {
			return err
		}
		api = newBareProxy(u, errLog)
		stop = func(context.Context) error { return nil }
	default:
		return fmt.Errorf("unknown -serve %q: want cortex or proxy", kind)
	}

	apiSrv, apiLn, err := listen(api, errLog)
	if err != nil {
		return err
	}
	dbgSrv, dbgLn, err := listen(debug, errLog)
	if err != nil {
		return errors.Join(err, apiLn.Close())
	}
	wg.Go(func() { _ = apiSrv.Serve(apiLn) })
	wg.Go(func() { _ = dbgSrv.Serve(dbgLn) })
	if err := json.NewEncoder(stdout).Encode(childAddrs{API: apiLn.Addr().String(), Debug: dbgLn.Addr().String()}); err != nil {
		return err
	}

	// Serve until the parent closes stdin.
	_, _ = io.Copy(io.Discard, os.Stdin)
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	err = errors.Join(stop(sctx), apiSrv.Shutdown(sctx), dbgSrv.Shutdown(sctx))
	cancel()
	wg.Wait()
	return err
}

// benchNeuron is the name of the one neuron in cortex's configuration.
const benchNeuron = "neuron-1"

// newCortex builds the gateway under test: one neuron, the bench
// catalogue, API keys and budgets from the Local provider (auth required),
// and the default metrics registry.
func newCortex(neuronURL, modelsPath, key string, logger *slog.Logger) (*cortex.Gateway, error) {
	if modelsPath == "" || key == "" {
		return nil, errors.New("cortex needs -models and -key")
	}
	cat, err := catalogue.Load(modelsPath)
	if err != nil {
		return nil, err
	}
	local, err := entitlements.NewLocal(entitlements.Config{RequireAuth: true, Keys: []entitlements.KeyConfig{
		{Key: key, AccountID: "bench", KeyID: "bench-key", HardCap: new(int64(1) << 60)},
	}})
	if err != nil {
		return nil, err
	}
	return cortex.NewGateway([]cortex.NeuronConfig{{Name: benchNeuron, Endpoint: neuronURL}}, cat,
		cortex.WithProvider(local), cortex.WithRequireAuth(true), cortex.WithLogger(logger))
}

// newBareProxy is one hop of the reference chain: a plain
// httputil.ReverseProxy with a transport tuned like the gateway's (keep-
// alives, 256 idle connections, no compression) that flushes every write,
// as a streaming proxy must.
//
// The request body goes out through a LimitReader of its Content-Length.
// Without it, after sending Content-Length bytes the transport reads the
// body once more to check that it ends, and that read can come after the
// server closed the body (it does when the answer's headers are written),
// which tears down the upstream connection mid-answer: the client sees
// "unexpected EOF" (Go issue 40747). cortex and the neuron read the body
// into memory first and do not meet it.
func newBareProxy(target *url.URL, errLog *log.Logger) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			if n := pr.In.ContentLength; n > 0 {
				pr.Out.Body = io.NopCloser(io.LimitReader(pr.In.Body, n))
			}
		},
		Transport:     newUpstreamTransport(),
		FlushInterval: -1,
		ErrorLog:      errLog,
	}
}

// newUpstreamTransport is the transport of a bare proxy hop.
func newUpstreamTransport() *http.Transport {
	return &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        4096,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
}

// listen opens a loopback listener for h, with the limits of cmd/cortex's
// servers.
func listen(h http.Handler, errLog *log.Logger) (*http.Server, net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          errLog,
	}
	return srv, ln, nil
}

// child is a running gateway process, seen from the parent.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	addrs childAddrs
	done  chan struct{} // closed when the process has exited
}

// startChild re-executes the bench binary as a gateway process of the
// given kind and waits for its addresses.
func startChild(kind string, args ...string) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, append([]string{"-serve=" + kind}, args...)...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{cmd: cmd, stdin: stdin, done: make(chan struct{})}
	line := make(chan []byte, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			line <- sc.Bytes()
		}
		close(line)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() {
		_ = cmd.Wait()
		close(c.done)
	}()
	select {
	case b, ok := <-line:
		if ok {
			if err := json.Unmarshal(b, &c.addrs); err == nil {
				return c, nil
			}
		}
		c.stop()
		return nil, fmt.Errorf("gateway process %q did not start (see its output above)", kind)
	case <-time.After(30 * time.Second):
		c.stop()
		return nil, fmt.Errorf("gateway process %q did not start within 30s", kind)
	}
}

// url is the base URL of the child's API.
func (c *child) url() string { return "http://" + c.addrs.API }

// stop closes the child's stdin, which makes it shut down, and waits for
// it; it is killed when it takes longer than 10 s.
func (c *child) stop() {
	_ = c.stdin.Close()
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// memory is a process's resident memory in bytes: now and at its peak.
type memory struct {
	rss, peak uint64
}

// memory reads VmRSS and VmHWM from /proc/PID/status (Linux only).
func (c *child) memory() (memory, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(c.cmd.Process.Pid) + "/status")
	if err != nil {
		return memory{}, err
	}
	return parseStatus(string(b)), nil
}

// parseStatus reads VmRSS and VmHWM (in kB) from a /proc/PID/status text.
func parseStatus(s string) memory {
	var m memory
	for line := range strings.Lines(s) {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		var dst *uint64
		switch k {
		case "VmRSS":
			dst = &m.rss
		case "VmHWM":
			dst = &m.peak
		default:
			continue
		}
		f := strings.Fields(v)
		if len(f) >= 1 {
			if n, err := strconv.ParseUint(f[0], 10, 64); err == nil {
				*dst = n * 1024
			}
		}
	}
	return m
}

// goroutines asks the child for its number of goroutines.
func (c *child) goroutines(ctx context.Context, hc *http.Client) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.addrs.Debug+"/debug/stats", nil)
	if err != nil {
		return 0, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var s childStats
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return 0, err
	}
	return s.Goroutines, nil
}

// cpuProfile fetches a CPU profile of the child over the next d and
// writes it to path.
func (c *child) cpuProfile(ctx context.Context, hc *http.Client, d time.Duration, path string) error {
	return c.profile(ctx, hc, fmt.Sprintf("profile?seconds=%d", max(int(d.Seconds()), 1)), path)
}

// heapProfile fetches a profile of the child's heap and writes it to path.
func (c *child) heapProfile(ctx context.Context, hc *http.Client, path string) error {
	return c.profile(ctx, hc, "heap", path)
}

// profile fetches /debug/pprof/<which> from the child into path.
func (c *child) profile(ctx context.Context, hc *http.Client, which, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.addrs.Debug+"/debug/pprof/"+which, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("profile: HTTP %d", resp.StatusCode)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		return errors.Join(err, f.Close())
	}
	return f.Close()
}
