package route_test

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/helexa-ai/helexa-go/cortex/route"
)

// affinityFleet is n idle neurons with "mid" loaded on each.
func affinityFleet(tb testing.TB, u *route.Usage, n int) *route.Fleet {
	tb.Helper()
	var states []route.NeuronState
	for i := range n {
		states = append(states, host(fmt.Sprintf("n%02d", i), gpus(24000), loaded("mid", 10000)))
	}
	return newFleet(tb, routerCatalogue(tb), u, states...)
}

// prompt returns a prompt of the given bytes, the same for the same seed.
func prompt(seed string, bytes int) []byte {
	return []byte(strings.Repeat(seed+" ", bytes/(len(seed)+1)+1)[:bytes])
}

func affinityRouter(tb testing.TB, a route.PrefixAffinity, opts ...route.RouterOption) *route.DefaultRouter {
	tb.Helper()
	r, err := route.NewRouter(append([]route.RouterOption{route.WithPrefixAffinity(a)}, opts...)...)
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

func routeTo(tb testing.TB, r route.Router, f *route.Fleet, req *route.Request) string {
	tb.Helper()
	d, err := r.Route(f, req)
	if err != nil || d.Action != route.ActionServe {
		tb.Fatalf("Route = %+v, %v", d, err)
	}
	return d.Neuron
}

// A prefix goes to one replica, whatever follows it and whichever gateway
// routes it; different prefixes spread over the replicas.
func TestPrefixAffinityIsStableAndSpreads(t *testing.T) {
	t.Parallel()
	f := affinityFleet(t, nil, 8)
	r1 := affinityRouter(t, route.PrefixAffinity{Remember: -1})
	r2 := affinityRouter(t, route.PrefixAffinity{Remember: -1}) // another cortex replica
	counts := map[string]int{}
	const tenants = 400
	for i := range tenants {
		system := prompt(fmt.Sprintf("tenant-%d", i), 3000)
		first := route.PrefixOf(append(system, "What is the time?"...))
		second := route.PrefixOf(append(system, strings.Repeat("A much longer question. ", 30)...))
		n := routeTo(t, r1, f, &route.Request{Model: "mid", Prefix: first})
		if m := routeTo(t, r1, f, &route.Request{Model: "mid", Prefix: second}); m != n {
			t.Fatalf("tenant %d: %s, then %s for another turn", i, n, m)
		}
		if m := routeTo(t, r2, f, &route.Request{Model: "mid", Prefix: first}); m != n {
			t.Fatalf("tenant %d: %s on one router, %s on another", i, n, m)
		}
		counts[n]++
	}
	if len(counts) != 8 {
		t.Fatalf("prefixes went to %d replicas, want all 8: %v", len(counts), counts)
	}
	for n, c := range counts {
		// 50 expected each; a fair hash stays well within ±50%.
		if c < 25 || c > 75 {
			t.Errorf("%s got %d of %d prefixes: %v", n, c, tenants, counts)
		}
	}
}

// Without a prefix of Depth blocks, a request is routed as without
// affinity: to the least busy replica.
func TestPrefixAffinityNeedsAPrefix(t *testing.T) {
	t.Parallel()
	u := route.NewUsage()
	f := affinityFleet(t, u, 4)
	u.Add("n00", "mid")
	r := affinityRouter(t, route.PrefixAffinity{Depth: 4})
	short := route.PrefixOf(prompt("short", 3*route.PrefixBlockBytes))
	if n := routeTo(t, r, f, &route.Request{Model: "mid", Prefix: short}); n != "n01" {
		t.Errorf("a 3-block prompt went to %s, want the least busy n01", n)
	}
}

// A hot prefix spills: every request of one prefix, each held in flight,
// keeps every replica within the bound of the mean.
func TestPrefixAffinityBoundsTheLoad(t *testing.T) {
	t.Parallel()
	const replicas, requests = 8, 400
	u := route.NewUsage()
	f := affinityFleet(t, u, replicas)
	r := affinityRouter(t, route.PrefixAffinity{Bound: 1.25})
	hot := route.PrefixOf(prompt("hot", 4000))
	load := map[string]int{}
	for i := range requests {
		n := routeTo(t, r, f, &route.Request{Model: "mid", Prefix: hot})
		u.Add(n, "mid")
		load[n]++
		most := 0
		for _, l := range load {
			most = max(most, l)
		}
		if limit := int(math.Ceil(1.25 * float64(i+1) / replicas)); most > limit {
			t.Fatalf("after %d requests a replica holds %d, over the bound %d: %v", i+1, most, limit, load)
		}
	}
	// 400 held requests fit in 7 replicas within 1.25 × the mean: the
	// prefix spreads over as few replicas as the bound allows.
	if want := int(math.Ceil(replicas / 1.25)); len(load) < want {
		t.Errorf("a hot prefix reached %d replicas, want at least %d: %v", len(load), want, load)
	}
}

// The preferred replica, when it cannot serve (tried, filtered, ejected),
// gives way to the next; the other scorers rank the rest.
func TestPrefixAffinityGivesWay(t *testing.T) {
	t.Parallel()
	f := affinityFleet(t, nil, 4)
	r := affinityRouter(t, route.PrefixAffinity{Remember: -1})
	p := route.PrefixOf(prompt("conversation-7", 4000))
	first := routeTo(t, r, f, &route.Request{Model: "mid", Prefix: p})
	retry := routeTo(t, r, f, &route.Request{Model: "mid", Prefix: p, Tried: unreachable(first)})
	if retry == first {
		t.Fatalf("the retry went back to %s", first)
	}
	noFirst := route.FilterFunc(func(_ *route.Fleet, _ *route.Request, c route.Candidate) bool { return c.Neuron.Name != first })
	filtered := affinityRouter(t, route.PrefixAffinity{Remember: -1}, route.WithFilters(noFirst))
	if n := routeTo(t, filtered, f, &route.Request{Model: "mid", Prefix: p}); n != retry {
		t.Errorf("filtered out, the prefix went to %s; the retry to %s: want the same next replica", n, retry)
	}
}

func TestPrefixAffinityRefusesBadKnobs(t *testing.T) {
	t.Parallel()
	for _, a := range []route.PrefixAffinity{
		{Depth: -1}, {Depth: route.MaxPrefixBlocks + 1}, {Bound: 0.9}, {Bound: math.NaN()}, {Weight: -1}, {Weight: math.Inf(1)},
		{Remember: -2}, {Remember: 1<<20 + 1},
	} {
		if _, err := route.NewRouter(route.WithPrefixAffinity(a)); err == nil {
			t.Errorf("%+v accepted", a)
		}
	}
}

func TestPrefixAffinityDoesNotAllocate(t *testing.T) {
	u := route.NewUsage()
	f := affinityFleet(t, u, 8)
	r := affinityRouter(t, route.PrefixAffinity{})
	req := &route.Request{Model: "mid", Prefix: route.PrefixOf(prompt("tenant", 4000))}
	if allocs := testing.AllocsPerRun(100, func() { routeTo(t, r, f, req) }); allocs != 0 {
		t.Errorf("Route with prefix affinity allocates %v times, want 0", allocs)
	}
}

// BenchmarkPrefixAffinity routes requests with a prefix over 8 replicas
// (the fleet of the benchmark) and over 1000 (the worst case of
// the replica scan).
func BenchmarkPrefixAffinity(b *testing.B) {
	for _, n := range []int{8, 1000} {
		b.Run(fmt.Sprintf("replicas=%d", n), func(b *testing.B) {
			u := route.NewUsage()
			var states []route.NeuronState
			for i := range n {
				states = append(states, host(fmt.Sprintf("neuron-%04d", i), gpus(24000), busy(loaded("mid", 10000), i%3, 0)))
			}
			f := newFleet(b, routerCatalogue(b), u, states...)
			r := affinityRouter(b, route.PrefixAffinity{})
			req := &route.Request{Model: "mid", Prefix: route.PrefixOf(prompt("tenant", 4000))}
			b.ReportAllocs()
			for b.Loop() {
				if d, err := r.Route(f, req); err != nil || d.Action != route.ActionServe {
					b.Fatal(d, err)
				}
			}
		})
	}
}

// A prefix seen for the first time goes to its replica only while that
// one is among the least busy; from its second request on, back to the
// replica it went to last (which holds it in its cache) while that one is
// within Bound of the mean, else to its own replica.
func TestPrefixAffinityRemembers(t *testing.T) {
	t.Parallel()
	idle := affinityFleet(t, nil, 8)
	forever := affinityRouter(t, route.PrefixAffinity{Remember: -1})
	// fleet returns 8 replicas with 8 requests each, but load on name.
	fleet := func(loads map[string]int) *route.Fleet {
		var states []route.NeuronState
		for j := range 8 {
			name := fmt.Sprintf("n%02d", j)
			load, ok := loads[name]
			if !ok {
				load = 8
			}
			states = append(states, host(name, gpus(24000), busy(loaded("mid", 10000), load, 0)))
		}
		return newFleet(t, routerCatalogue(t), nil, states...)
	}
	for i := range 20 {
		p := route.PrefixOf(prompt(fmt.Sprintf("tenant-%d", i), 3000))
		req := &route.Request{Model: "mid", Prefix: p}
		own := routeTo(t, forever, idle, req)
		// Its replica holds 10 requests, the others 8: within 1.25 × the
		// mean (11 with this one), but busier than the least busy.
		f := fleet(map[string]int{own: 10})
		r := affinityRouter(t, route.PrefixAffinity{})
		first := routeTo(t, r, f, req)
		if first == own {
			t.Fatalf("prefix %d, first sight: its replica %s, busier than the least", i, own)
		}
		for range 3 {
			if n := routeTo(t, r, f, req); n != first {
				t.Fatalf("prefix %d, seen before: %s, want %s, where it went last", i, n, first)
			}
		}
		// The replica it went to last is full (14 requests, the bound
		// 12): back to its own replica, and it stays there.
		if n := routeTo(t, r, fleet(map[string]int{own: 10, first: 14}), req); n != own {
			t.Fatalf("prefix %d, its last replica full: %s, want its own %s", i, n, own)
		}
		if n := routeTo(t, r, f, req); n != own {
			t.Fatalf("prefix %d, after moving: %s, want %s, where it went last", i, n, own)
		}
	}
}
