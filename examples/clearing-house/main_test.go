package main

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestRun: two gateways spend one account through the house until its
// cap refuses them, and the cap holds.
func TestRun(t *testing.T) {
	var out strings.Builder
	if err := run(t.Context(), &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	m := regexp.MustCompile(`served (\d+) requests.*spent (\d+) of a cap of (\d+)`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("output %q", out.String())
	}
	served, _ := strconv.Atoi(m[1])
	spent, _ := strconv.Atoi(m[2])
	if served == 0 || spent > hardCap || spent == 0 {
		t.Errorf("served %d, spent %d of %d", served, spent, hardCap)
	}
}
