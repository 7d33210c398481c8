package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/internal/oaierr"
)

// statusTimeout bounds "cortex status" when --timeout is not given.
const statusTimeout = 10 * time.Second

// runStatus is "cortex status": the fleet as tables, like kubectl get, or
// as the JSON of GET /status.json with -o json.
func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("cortex status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	endpoint := fs.String("endpoint", "http://"+cortex.DefaultListen, "base URL of the gateway")
	apiKey := fs.String("api-key", "", "API key (default $HELEXA_API_KEY); an admin key shows budgets")
	output := fs.String("o", "table", "output: table or json")
	timeout := fs.Duration("timeout", statusTimeout, "how long to wait for the gateway")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("status: unexpected argument %q", fs.Arg(0))
	}
	if *output != "table" && *output != "json" {
		return fmt.Errorf("status: -o %q: want table or json", *output)
	}
	key := *apiKey
	if key == "" {
		key = os.Getenv("HELEXA_API_KEY")
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	body, err := fetchStatus(ctx, *endpoint, key, key != "")
	refused, isRefused := errors.AsType[*keyRefusedError](err)
	if isRefused {
		// The key is unknown or no admin key: say so, and show what the
		// gateway shows without it.
		if body, err = fetchStatus(ctx, *endpoint, "", false); err != nil {
			return fmt.Errorf("status: the gateway refused the key: %w", refused)
		}
		fmt.Fprintf(stderr, "cortex status: the gateway refused the key (%s); showing the public view, without budgets\n", refused)
	}
	if err != nil {
		return err
	}
	var st cortex.Status
	if err := json.Unmarshal(body, &st); err != nil {
		return fmt.Errorf("status: the gateway answered something else than the JSON of a status: %w", err)
	}
	if key != "" && !isRefused && !st.Admin {
		fmt.Fprintln(stderr, "cortex status: the key is not an admin key of this gateway: no budgets shown")
	}
	if *output == "json" {
		var out bytes.Buffer
		_ = json.Indent(&out, body, "", "  ") // valid: it was decoded
		out.WriteByte('\n')
		_, err := stdout.Write(out.Bytes())
		return err
	}
	return printStatus(stdout, st)
}

// keyRefusedError is the gateway's 401 to the admin view for a key: the
// key is unknown, revoked or not an admin key.
type keyRefusedError struct{ code, msg string }

func (e *keyRefusedError) Error() string { return "401 " + e.code + ": " + e.msg }

// fetchStatus returns the body of GET <endpoint>/status.json; admin asks
// for the admin view (?admin=1), which the gateway refuses with a
// *keyRefusedError unless key is an admin key.
func fetchStatus(ctx context.Context, endpoint, key string, admin bool) ([]byte, error) {
	path := "/status.json"
	if admin {
		path += "?admin=1"
	}
	u, err := url.Parse(strings.TrimSuffix(endpoint, "/") + path)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("status: --endpoint %q is not an http(s) URL", endpoint)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("status: reading the answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		if e, ok := oaierr.Read(bytes.NewReader(body)); ok {
			if admin && resp.StatusCode == http.StatusUnauthorized {
				return nil, &keyRefusedError{code: e.Code, msg: e.Message}
			}
			hint := ""
			if resp.StatusCode == http.StatusUnauthorized {
				hint = " (give a key with --api-key or HELEXA_API_KEY)"
			}
			return nil, fmt.Errorf("status: %s: %s: %s%s", resp.Status, e.Code, e.Message, hint)
		}
		return nil, errors.New("status: " + resp.Status)
	}
	return body, nil
}

// printStatus writes the tables of neurons, models, budgets (admin view)
// and recent events.
func printStatus(w io.Writer, st cortex.Status) error {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	fmt.Fprintf(tw, "NEURON\tSTATUS\tGPUS\tVRAM MODELS/TOTAL\tFREE\tMODELS\tLAST POLL\n")
	for _, n := range st.Neurons {
		var placed, total uint64
		for _, g := range n.GPUs {
			placed, total = placed+g.PlacedMB, total+g.TotalMB
		}
		models := make([]string, 0, len(n.Models))
		for _, m := range n.Models {
			models = append(models, residentModel(st.GeneratedAt, m))
		}
		free := gib(n.FreeVRAMMB)
		if n.Stale {
			free = "-" // down: nothing of it is live
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s/%s\t%s\t%s\t%s\n", n.Name, n.State, len(n.GPUs), gib(placed), gib(total), free,
			orDash(strings.Join(models, ",")), since(st.GeneratedAt, n.LastSuccess))
	}
	fmt.Fprintln(tw)
	fmt.Fprintf(tw, "MODEL\tSTATUS\tLOCATIONS\tREPLICAS\tFEASIBLE ON\tIN FLIGHT\tPROMPT CACHE\tALIASES\n")
	inFlight := map[string]int{}
	ejected := map[[2]string]bool{}
	for _, n := range st.Neurons {
		for _, m := range n.Models {
			inFlight[m.ID] += m.InFlight + m.Queued
			ejected[[2]string{n.Name, m.ID}] = m.Ejected
		}
	}
	for _, m := range st.Models {
		locs := make([]string, 0, len(m.Locations))
		for _, l := range m.Locations {
			s := l.Neuron + ":" + string(l.Status)
			if l.LoadingSeconds > 0 {
				s += "(" + strconv.FormatFloat(l.LoadingSeconds, 'f', 0, 64) + "s)"
			}
			switch {
			case !l.Healthy:
				s += "(neuron down)"
			case ejected[[2]string{l.Neuron, m.ID}]:
				s += "(ejected)"
			}
			locs = append(locs, s)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", m.ID, m.State, orDash(strings.Join(locs, ",")), replicas(m.Replicas),
			orDash(strings.Join(m.FeasibleOn, ",")), inFlight[m.ID], promptCache(m.PromptCache), orDash(strings.Join(m.Aliases, ",")))
	}
	if st.Admin {
		fmt.Fprintln(tw)
		fmt.Fprintf(tw, "ACCOUNT\tKEY\tUNIT\tWINDOW\tHARD CAP\tSPENT\tRESERVED\tREMAINING\n")
		for _, b := range st.Budgets {
			if b.Error != "" {
				fmt.Fprintf(tw, "%s\t%s\t%s\terror: %s\n", b.AccountID, b.KeyID, b.Unit, b.Error)
				continue
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", b.AccountID, b.KeyID, b.Unit, b.Window,
				optAmount(b, b.HardCap, "uncapped"), b.FormatAmount(b.Spent), b.FormatAmount(b.Reserved), optAmount(b, b.Remaining, "-"))
		}
	}
	if len(st.Events) > 0 {
		fmt.Fprintln(tw)
		fmt.Fprintf(tw, "AGE\tEVENT\tMODEL\tNEURON\tDETAIL\n")
		for i, e := range st.Events {
			if i == 10 {
				break
			}
			detail := e.Error
			if e.Reason != "" {
				detail = strings.TrimPrefix(detail+"; "+e.Reason, "; ")
			}
			if e.For != "" {
				detail = "for " + e.For
			} else if e.Took > 0 && detail == "" {
				detail = "took " + e.Took.Round(time.Millisecond).String()
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", since(st.GeneratedAt, e.Time), e.Kind, orDash(e.Model), e.Neuron,
				orDash(oneLine(detail, 100)))
		}
	}
	return tw.Flush()
}

// replicas formats a scaled model's replicas for the models table: ready,
// "+N" loading, the bounds, and the last scale decision with its reason:
// "2+1/1-3 (scale_out: min_replicas 1)"; "-" for a model without bounds.
func replicas(r *cortex.ModelReplicas) string {
	if r == nil {
		return "-"
	}
	s := strconv.Itoa(r.Ready)
	if r.Loading > 0 {
		s += "+" + strconv.Itoa(r.Loading)
	}
	s += "/" + strconv.Itoa(r.Min) + "-" + strconv.Itoa(r.Max)
	if e := r.LastScale; e != nil {
		s += " (" + string(e.Kind) + ": " + e.Reason + ")"
	}
	return s
}

// promptCache formats a model's prompt cache hits: the hit ratio and the
// prompt tokens it is of, "62.5% of 1200"; "-" without any.
func promptCache(pc *cortex.PromptCache) string {
	if pc == nil {
		return "-"
	}
	return strconv.FormatFloat(pc.HitRatio*100, 'f', 1, 64) + "% of " + strconv.FormatInt(pc.PromptTokens, 10)
}

// residentModel formats a model of a neuron for the neurons table: its id,
// then what is not plain "loaded" in parentheses: its status, "stale"
// while the neuron is down, "ejected Ns" while out of rotation.
func residentModel(now time.Time, m cortex.StatusReplica) string {
	var notes []string
	if m.Status != "loaded" {
		notes = append(notes, string(m.Status))
	}
	if m.Stale {
		notes = append(notes, "stale")
	}
	if m.Ejected {
		notes = append(notes, "ejected "+until(now, m.EjectedUntil))
	}
	if len(notes) == 0 {
		return m.ID
	}
	return m.ID + "(" + strings.Join(notes, ",") + ")"
}

// until formats the time from now to t like since.
func until(now, t time.Time) string { return since(t, now) }

// oneLine keeps a table cell on one line: the first line of s, cut to n
// runes.
func oneLine(s string, n int) string {
	s, _, cut := strings.Cut(strings.TrimSpace(s), "\n")
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	if cut {
		return s + " …"
	}
	return s
}

// gib formats MiB in GiB with one decimal.
func gib(mb uint64) string { return strconv.FormatFloat(float64(mb)/1024, 'f', 1, 64) + "Gi" }

// since formats the age of t at now like kubectl: 45s, 3m, 2h, 4d; "-"
// for the zero time.
func since(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := max(now.Sub(t), 0)
	switch {
	case d < time.Minute:
		return strconv.Itoa(int(d/time.Second)) + "s"
	case d < time.Hour:
		return strconv.Itoa(int(d/time.Minute)) + "m"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d/time.Hour)) + "h"
	}
	return strconv.Itoa(int(d/(24*time.Hour))) + "d"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// optAmount formats an amount of b's unit, none when absent.
func optAmount(b cortex.StatusBudget, v *int64, none string) string {
	if v == nil {
		return none
	}
	return b.FormatAmount(*v)
}
