// The tests are in package main: a command's package cannot be imported
// by an external test package.
package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestSummarizeSorts(t *testing.T) {
	t.Parallel()
	samples := []time.Duration{5, 1, 4, 2, 3}
	got := summarize(samples)
	want := summary{n: 5, p50: 3, p99: 5}
	if got != want {
		t.Errorf("summarize = %+v, want %+v", got, want)
	}
}

func TestFormatting(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		got  string
		want string
	}{
		{name: "sub-millisecond", got: fmtMS(215 * time.Microsecond), want: "0.215 ms"},
		{name: "milliseconds", got: fmtMS(2345 * time.Microsecond), want: "2.35 ms"},
		{name: "tens", got: fmtMS(12340 * time.Microsecond), want: "12.3 ms"},
		{name: "hundreds", got: fmtMS(579 * time.Millisecond), want: "579 ms"},
		{name: "added positive", got: fmtAdded(120 * time.Microsecond), want: "+0.120 ms"},
		{name: "added zero", got: fmtAdded(0), want: "+0.000 ms"},
		{name: "added negative", got: fmtAdded(-10 * time.Microsecond), want: "-0.010 ms"},
		{name: "rate", got: fmtRate(3774.4), want: "3774"},
		{name: "low rate", got: fmtRate(31.25), want: "31.2"},
		{name: "ratio", got: fmtRatio(0.856), want: "0.86x"},
		{name: "megabytes", got: fmtMB(24_500_000), want: "24.5 MB"},
		{name: "unknown megabytes", got: fmtMB(0), want: "-"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, tt.got, tt.want)
		}
	}
}

func TestAddedRatio(t *testing.T) {
	t.Parallel()
	type out struct {
		Ratio        float64
		HasRatio, OK bool
	}
	tests := []struct {
		name     string
		got, ref time.Duration
		want     out
	}{
		{name: "within", got: 3, ref: 2, want: out{Ratio: 1.5, HasRatio: true, OK: true}},
		{name: "over", got: 4, ref: 2, want: out{Ratio: 2, HasRatio: true, OK: false}},
		{name: "faster than the chain", got: 1, ref: 2, want: out{Ratio: 0.5, HasRatio: true, OK: true}},
		{name: "chain adds nothing, neither do we", got: -1, ref: 0, want: out{OK: true}},
		{name: "chain adds nothing, we do", got: 1, ref: -1, want: out{OK: false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, has, ok := addedRatio(tt.got, tt.ref, 1.5)
			if diff := cmp.Diff(out{r, has, ok}, tt.want); diff != "" {
				t.Errorf("addedRatio(%v, %v) (-got +want):\n%s", tt.got, tt.ref, diff)
			}
		})
	}
}

func TestTableMarkdown(t *testing.T) {
	t.Parallel()
	tb := &table{
		title:  "Closed loop",
		header: []string{"target", "req/s"},
		note:   "a note",
	}
	tb.add("direct to engine", "13131")
	tb.add("cortex", "1332", "ignored extra cell")
	tb.add("short")
	var buf bytes.Buffer
	if err := tb.markdown(&buf); err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{
		"### Closed loop",
		"",
		"| target           | req/s |",
		"| ---------------- | ----- |",
		"| direct to engine | 13131 |",
		"| cortex           | 1332  |",
		"| short            |       |",
		"",
		"a note",
		"",
		"",
	}, "\n")
	if diff := cmp.Diff(buf.String(), want); diff != "" {
		t.Errorf("markdown (-got +want):\n%s", diff)
	}
}

func TestCellText(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, want string
	}{
		{name: "plain", in: "0", want: "0"},
		{name: "pipe escaped", in: "a|b", want: `a\|b`},
		{name: "one line", in: "3 (HTTP 502:\n  bad\tgateway)", want: "3 (HTTP 502: bad gateway)"},
		{name: "long cut", in: strings.Repeat("x", 120), want: strings.Repeat("x", 97) + "..."},
	}
	for _, tt := range tests {
		if got := cellText(tt.in); got != tt.want {
			t.Errorf("%s: cellText(%q) = %q, want %q", tt.name, tt.in, got, tt.want)
		}
	}
}

func TestReportMarkdownHeader(t *testing.T) {
	t.Parallel()
	r := report{header: []string{"go: go1.26", "commit: abc1234"}}
	r.addTable(&table{header: []string{"a"}, rows: [][]string{{"1"}}})
	var buf bytes.Buffer
	if err := r.markdown(&buf); err != nil {
		t.Fatal(err)
	}
	want := "## helexa-go gateway benchmark\n\n- go: go1.26\n- commit: abc1234\n\n| a   |\n| --- |\n| 1   |\n\n"
	if diff := cmp.Diff(buf.String(), want); diff != "" {
		t.Errorf("report (-got +want):\n%s", diff)
	}
}

func TestWriteCSV(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	err := writeCSV(&buf, []metric{
		{scenario: "closed", target: "cortex", concurrency: 64, name: "requests_per_second", value: 3774.5, unit: "1/s"},
		{scenario: "stream", target: "chain, hop 1", concurrency: 1, name: "ttft_p50", value: 0.25, unit: "ms"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "scenario,target,concurrency,metric,value,unit\n" +
		"closed,cortex,64,requests_per_second,3774.5,1/s\n" +
		"stream,\"chain, hop 1\",1,ttft_p50,0.25,ms\n"
	if diff := cmp.Diff(buf.String(), want); diff != "" {
		t.Errorf("csv (-got +want):\n%s", diff)
	}
}

func TestParseStatus(t *testing.T) {
	t.Parallel()
	in := "Name:\tbench\nVmPeak:\t  900000 kB\nVmHWM:\t   40000 kB\nVmRSS:\t   25000 kB\nThreads:\t7\n"
	got := parseStatus(in)
	want := memory{rss: 25000 * 1024, peak: 40000 * 1024}
	if got != want {
		t.Errorf("parseStatus = %+v, want %+v", got, want)
	}
}

func TestParseInts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    []int
		wantErr bool
	}{
		{name: "list", in: "1,16,64", want: []int{1, 16, 64}},
		{name: "spaces and empty fields", in: " 1, ,16 ", want: []int{1, 16}},
		{name: "zero", in: "0", wantErr: true},
		{name: "word", in: "1,x", wantErr: true},
		{name: "empty", in: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseInts(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseInts(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("parseInts(%q) (-got +want):\n%s", tt.in, diff)
			}
		})
	}
}

func TestNotBatched(t *testing.T) {
	t.Parallel()
	tests := []struct {
		arrivals, engine int
		want             bool
	}{
		{16, 16, true},
		{12, 16, true},
		{11, 16, false},
		{1, 16, false},
	}
	for _, tt := range tests {
		if got := notBatched(tt.arrivals, tt.engine); got != tt.want {
			t.Errorf("notBatched(%d, %d) = %v, want %v", tt.arrivals, tt.engine, got, tt.want)
		}
	}
}
