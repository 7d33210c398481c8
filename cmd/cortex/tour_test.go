//go:build unix

package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// readmeBlocks returns the fenced blocks of README.md marked "tour:NAME"
// in their info string, by NAME.
func readmeBlocks(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := map[string]string{}
	var name string
	var body strings.Builder
	inside := false
	for line := range strings.Lines(string(data)) {
		trimmed := strings.TrimRight(line, "\n")
		switch {
		case !inside && strings.HasPrefix(trimmed, "```"):
			inside, name = true, ""
			body.Reset()
			for f := range strings.FieldsSeq(trimmed[3:]) {
				if n, ok := strings.CutPrefix(f, "tour:"); ok {
					name = n
				}
			}
		case inside && trimmed == "```":
			inside = false
			if name != "" {
				blocks[name] = body.String()
			}
		case inside:
			body.WriteString(line)
		}
	}
	for _, want := range []string{"intro", "answer", "python", "status"} {
		if blocks[want] == "" {
			t.Fatalf("README.md has no block marked tour:%s", want)
		}
	}
	return blocks
}

// loopback matches the addresses that differ from run to run.
var loopback = regexp.MustCompile(`127\.0\.0\.1:\d+`)

// TestReadmeTour runs the README's five-minute tour against "cortex dev",
// started as a user starts it (the command, in a fresh directory), and
// checks that what it prints, answers and shows has the shape the README
// shows: the intro, the curl's answer (fields, finish reason, token counts
// within an order of magnitude), the OpenAI client's stream, the tables of
// "cortex status", and the shutdown.
func TestReadmeTour(t *testing.T) {
	blocks := readmeBlocks(t)
	models, err := filepath.Abs("../../testdata/models.toml")
	if err != nil {
		t.Fatal(err)
	}
	dev := runDaemonIn(t, t.TempDir(), "dev", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--models", models)
	m := dev.Wait(t, regexp.MustCompile(`(?s)(cortex dev \(version.*?Ctrl-C stops everything\.\n)`))
	intro := m[1]
	addr := loopback.FindString(intro[strings.Index(intro, "gateway"):])

	// 1. The intro, line by line, but for the addresses.
	if got, want := loopback.ReplaceAllString(intro, "ADDR"), loopback.ReplaceAllString(blocks["intro"], "ADDR"); got != want {
		t.Errorf("cortex dev prints:\n%s\nthe README shows:\n%s", got, want)
	}

	// 2. The README's curl, run against this gateway.
	var curl string
	for line := range strings.Lines(blocks["intro"]) {
		if strings.HasPrefix(line, "curl ") {
			curl = loopback.ReplaceAllString(strings.TrimSpace(line), addr)
		}
	}
	resp, err := http.DefaultClient.Do(curlRequest(t, t.Context(), curl))
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	err = json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("the curl: status %d, %v", resp.StatusCode, err)
	}
	var want map[string]any
	if err := json.Unmarshal([]byte(blocks["answer"]), &want); err != nil {
		t.Fatalf("the README's answer is not JSON: %v", err)
	}
	sameShape(t, "answer", got, want)

	// 3. The OpenAI client's request: its model and message, streamed.
	python := blocks["python"]
	field := func(re string) string {
		m := regexp.MustCompile(re).FindStringSubmatch(python)
		if m == nil {
			t.Fatalf("no %s in the README's Python", re)
		}
		return m[1]
	}
	body, _ := json.Marshal(map[string]any{
		"model":    field(`model="([^"]+)"`),
		"messages": []map[string]string{{"role": "user", "content": field(`"content": "([^"]+)"`)}},
		"stream":   true,
	})
	base := loopback.ReplaceAllString(field(`base_url="([^"]+)"`), addr)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, base+"/chat/completions", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+field(`api_key="([^"]+)"`))
	req.Header.Set("Content-Type", "application/json")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	finish, done := "", false
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		if data == "[DONE]" {
			done = true
			continue
		}
		var c struct {
			Choices []struct {
				FinishReason *string `json:"finish_reason"`
			} `json:"choices"`
		}
		if err := json.Unmarshal([]byte(data), &c); err != nil {
			t.Fatalf("stream chunk %s: %v", data, err)
		}
		for _, ch := range c.Choices {
			if ch.FinishReason != nil {
				finish = *ch.FinishReason
			}
		}
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !done || finish != "stop" {
		t.Errorf("the Python stream: status %d, [DONE] %v, finish %q; want 200, true, stop", resp.StatusCode, done, finish)
	}

	// 4. cortex status, with the README's arguments.
	status := blocks["status"]
	first, shown, _ := strings.Cut(status, "\n")
	_, cmdline, ok := strings.Cut(first, "cortex ")
	if !strings.HasPrefix(first, "$ ") || !ok {
		t.Fatalf("the status block does not start with the command: %q", first)
	}
	var stdout, stderr bytes.Buffer
	if err := run(t.Context(), append(strings.Fields(cmdline), "--endpoint", "http://"+addr), &stdout, &stderr); err != nil {
		t.Fatalf("%s: %v\n%s", cmdline, err, stderr.String())
	}
	sameTables(t, stdout.String(), shown)

	// 5. Ctrl-C: dev mode says it stops, then that it stopped.
	if err := dev.Cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := dev.Exit(t); err != nil {
		t.Errorf("cortex dev ended with %v after SIGINT:\n%s", err, dev)
	}
	out := dev.String()
	stopping := strings.Index(out, "cortex dev: shutting down")
	if stopping < 0 || !strings.Contains(out[stopping:], "\ncortex dev: stopped\n") {
		t.Errorf("cortex dev did not log its shutdown:\n%s", out)
	}
}

// sameShape checks that got has every field of want, recursively, with
// the same strings where want's do not end in "…" (a string the README
// cuts short must be a prefix of got's), the same booleans and nulls, and
// numbers of the same order of magnitude; the first element of a
// README array stands for each of got's. "created" and "id" vary.
func sameShape(t *testing.T, path string, got, want any) {
	t.Helper()
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			t.Errorf("%s: %T, the README shows an object", path, got)
			return
		}
		for k, wv := range w {
			gv, ok := g[k]
			if !ok {
				t.Errorf("%s.%s: missing; the README shows it", path, k)
				continue
			}
			if k != "created" {
				sameShape(t, path+"."+k, gv, wv)
			}
		}
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			t.Errorf("%s: %v, the README shows %d elements", path, got, len(w))
			return
		}
		for i := range w {
			sameShape(t, path+"["+strconv.Itoa(i)+"]", g[i], w[i])
		}
	case string:
		g, _ := got.(string)
		if prefix, cut := strings.CutSuffix(w, "…"); cut {
			if !strings.HasPrefix(g, prefix) {
				t.Errorf("%s: %.60q…, the README shows %q", path, g, w)
			}
		} else if g != w {
			t.Errorf("%s: %q, the README shows %q", path, g, w)
		}
	case float64:
		g, ok := got.(float64)
		if !ok || magnitude(g) != magnitude(w) {
			t.Errorf("%s: %v, the README shows %v (not the same order of magnitude)", path, got, w)
		}
	default:
		if got != want {
			t.Errorf("%s: %v, the README shows %v", path, got, want)
		}
	}
}

// magnitude is the order of magnitude of v: its number of decimal digits.
func magnitude(v float64) int {
	if v == 0 {
		return 0
	}
	return int(math.Floor(math.Log10(math.Abs(v)))) + 1
}

// cells splits a table line of "cortex status" into its cells: columns
// are at least two spaces apart, words within a cell one.
var cellSep = regexp.MustCompile(` {2,}`)

// sameTables checks that the tables of "cortex status" match those the
// README shows: the same tables with the same columns, the same rows
// (their first cell) in the same order, and in each row the same values
// in the columns that do not vary from run to run (names, states,
// locations, aliases, units), numbers of the same order of magnitude in
// the budget columns.
func sameTables(t *testing.T, got, want string) {
	t.Helper()
	tables := func(s string) [][][]string {
		var out [][][]string
		for block := range strings.SplitSeq(strings.TrimSpace(s), "\n\n") {
			var rows [][]string
			for line := range strings.Lines(block) {
				rows = append(rows, cellSep.Split(strings.TrimSpace(line), -1))
			}
			out = append(out, rows)
		}
		return out
	}
	exact := []string{"NEURON", "STATUS", "GPUS", "MODEL", "LOCATIONS", "FEASIBLE ON", "ALIASES",
		"ACCOUNT", "KEY", "UNIT", "WINDOW", "RESERVED", "EVENT"}
	numeric := []string{"HARD CAP", "SPENT", "REMAINING"}
	g, w := tables(got), tables(want)
	if len(g) != len(w) {
		t.Fatalf("cortex status prints %d tables, the README shows %d:\n%s", len(g), len(w), got)
	}
	for i := range w {
		header := w[i][0]
		if !slices.Equal(g[i][0], header) {
			t.Errorf("table %d: columns %q, the README shows %q", i, g[i][0], header)
			continue
		}
		if len(g[i]) != len(w[i]) {
			t.Errorf("table %v: %d rows, the README shows %d:\n%s", header, len(g[i])-1, len(w[i])-1, got)
			continue
		}
		for r := 1; r < len(w[i]); r++ {
			gr, wr := g[i][r], w[i][r]
			if len(gr) != len(header) || len(wr) != len(header) {
				t.Errorf("table %v: row %q or %q has not %d cells", header, gr, wr, len(header))
				continue
			}
			for c, col := range header {
				switch {
				case slices.Contains(exact, col) && gr[c] != wr[c]:
					t.Errorf("%s of %s: %q, the README shows %q", col, wr[0], gr[c], wr[c])
				case slices.Contains(numeric, col):
					gv, gerr := strconv.ParseFloat(gr[c], 64)
					wv, werr := strconv.ParseFloat(wr[c], 64)
					if gerr != nil || werr != nil || magnitude(gv) != magnitude(wv) {
						t.Errorf("%s of %s: %q, the README shows %q (not the same order of magnitude)", col, wr[0], gr[c], wr[c])
					}
				}
			}
		}
	}
	if t.Failed() {
		t.Logf("cortex status printed:\n%s", got)
	}
}
