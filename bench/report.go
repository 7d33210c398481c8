package main

import (
	"encoding/csv"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/helexa-ai/helexa-go/bench/internal/benchenv"
)

// summary is the distribution of one set of latency samples.
type summary struct {
	n        int
	p50, p99 time.Duration
}

// summarize sorts samples in place and summarises them.
func summarize(samples []time.Duration) summary {
	slices.Sort(samples)
	return summary{n: len(samples), p50: benchenv.Percentile(samples, 50), p99: benchenv.Percentile(samples, 99)}
}

// fmtMS formats d in milliseconds with about three significant digits.
func fmtMS(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	a := math.Abs(ms)
	var prec int
	switch {
	case a < 1:
		prec = 3
	case a < 10:
		prec = 2
	case a < 100:
		prec = 1
	}
	return strconv.FormatFloat(ms, 'f', prec, 64) + " ms"
}

// fmtAdded formats an added latency with its sign.
func fmtAdded(d time.Duration) string {
	if d >= 0 {
		return "+" + fmtMS(d)
	}
	return fmtMS(d)
}

// fmtRate formats a rate per second.
func fmtRate(r float64) string {
	if r >= 100 {
		return strconv.FormatFloat(r, 'f', 0, 64)
	}
	return strconv.FormatFloat(r, 'f', 1, 64)
}

// fmtRatio formats a ratio as "0.91x".
func fmtRatio(r float64) string {
	return strconv.FormatFloat(r, 'f', 2, 64) + "x"
}

// fmtMB formats a byte count in megabytes (10^6 bytes); "-" for 0
// (unknown).
func fmtMB(b uint64) string {
	if b == 0 {
		return "-"
	}
	return strconv.FormatFloat(float64(b)/1e6, 'f', 1, 64) + " MB"
}

// verdict is "PASS" or "FAIL".
func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

// addedRatio compares the latency a gateway adds with what the bare chain
// adds: got/ref, and whether got <= limit*ref. A reference at or below
// zero (the chain added nothing measurable) gives no ratio; the check then
// passes only when got adds nothing either.
func addedRatio(got, ref time.Duration, limit float64) (ratio float64, hasRatio, ok bool) {
	if ref <= 0 {
		return 0, false, got <= 0
	}
	ratio = float64(got) / float64(ref)
	return ratio, true, ratio <= limit
}

// table is one Markdown table of the report.
type table struct {
	title  string
	note   string // printed under the table
	header []string
	rows   [][]string
}

// add appends a row; missing cells are left empty.
func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

// cellText makes s safe in a Markdown table cell: one line, pipes
// escaped, at most maxCell bytes.
func cellText(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > maxCell {
		s = s[:maxCell-3] + "..."
	}
	return strings.ReplaceAll(s, "|", `\|`)
}

// maxCell bounds a cell's text (an error message can be long).
const maxCell = 100

// markdown writes t as a Markdown table, its columns padded to line up.
// Cells beyond the header's columns are dropped.
func (t *table) markdown(w io.Writer) error {
	rows := make([][]string, len(t.rows))
	for i, r := range t.rows {
		rows[i] = make([]string, len(t.header))
		for j := range min(len(r), len(t.header)) {
			rows[i][j] = cellText(r[j])
		}
	}
	width := make([]int, len(t.header))
	for i, h := range t.header {
		width[i] = max(len(h), 3)
	}
	for _, r := range rows {
		for i, c := range r {
			width[i] = max(width[i], len(c))
		}
	}
	var b strings.Builder
	if t.title != "" {
		b.WriteString("### " + t.title + "\n\n")
	}
	line := func(cells []string, pad byte) {
		b.WriteString("|")
		for i, wd := range width {
			var c string
			if i < len(cells) {
				c = cells[i]
			}
			b.WriteByte(' ')
			b.WriteString(c)
			b.WriteString(strings.Repeat(string(pad), wd-len(c)))
			b.WriteString(" |")
		}
		b.WriteString("\n")
	}
	line(t.header, ' ')
	sep := make([]string, len(width))
	for i, wd := range width {
		sep[i] = strings.Repeat("-", wd)
	}
	line(sep, '-')
	for _, r := range rows {
		line(r, ' ')
	}
	if t.note != "" {
		b.WriteString("\n" + t.note + "\n")
	}
	b.WriteString("\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// metric is one figure of the CSV output: raw numbers in base units, one
// per line, so that a spreadsheet or a script needs no parsing of the
// Markdown.
type metric struct {
	scenario    string
	target      string
	concurrency int
	name        string
	value       float64
	unit        string
}

// writeCSV writes the metrics with a header line.
func writeCSV(w io.Writer, ms []metric) error {
	cw := csv.NewWriter(w)
	if err := cw.Write([]string{"scenario", "target", "concurrency", "metric", "value", "unit"}); err != nil {
		return err
	}
	for _, m := range ms {
		rec := []string{m.scenario, m.target, strconv.Itoa(m.concurrency), m.name,
			strconv.FormatFloat(m.value, 'g', -1, 64), m.unit}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// report collects the tables and metrics of one run.
type report struct {
	header  []string // "key: value" lines
	tables  []*table
	metrics []metric
}

func (r *report) addTable(t *table) { r.tables = append(r.tables, t) }

// addMetric records one CSV figure.
func (r *report) addMetric(scenario, target string, conc int, name string, v float64, unit string) {
	r.metrics = append(r.metrics, metric{scenario, target, conc, name, v, unit})
}

// addLatency records a summary as p50 and p99 in milliseconds.
func (r *report) addLatency(scenario, target string, conc int, prefix string, s summary) {
	r.addMetric(scenario, target, conc, prefix+"p50", ms(s.p50), "ms")
	r.addMetric(scenario, target, conc, prefix+"p99", ms(s.p99), "ms")
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// markdown writes the whole report.
func (r *report) markdown(w io.Writer) error {
	var b strings.Builder
	b.WriteString("## helexa-go gateway benchmark\n\n")
	for _, h := range r.header {
		b.WriteString("- " + h + "\n")
	}
	b.WriteString("\n")
	if _, err := io.WriteString(w, b.String()); err != nil {
		return err
	}
	for _, t := range r.tables {
		if err := t.markdown(w); err != nil {
			return err
		}
	}
	return nil
}
