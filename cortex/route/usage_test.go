package route_test

import (
	"sync"
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/cortex/route"
)

func TestUsageInFlight(t *testing.T) {
	t.Parallel()
	var u route.Usage // the zero value works
	u.Add("n1", "a")
	u.Add("n1", "a")
	u.Add("n2", "a")
	u.Done("n1", "a")
	for _, tt := range []struct {
		neuron, model string
		want          int
	}{
		{"n1", "a", 1},
		{"n2", "a", 1},
		{"n1", "b", 0},
		{"n3", "a", 0},
	} {
		if got := u.InFlight(tt.neuron, tt.model); got != tt.want {
			t.Errorf("InFlight(%s, %s) = %d, want %d", tt.neuron, tt.model, got, tt.want)
		}
	}
	c := u.Counter("n1", "a")
	if got := u.Counter("n1", "a"); got != c || c.InFlight() != 1 {
		t.Errorf("Counter(n1, a) = %p with %d in flight, want %p with 1", got, got.InFlight(), c)
	}
}

func TestUsageTouchNeverMovesBack(t *testing.T) {
	t.Parallel()
	u := route.NewUsage()
	if got := u.LastUsed("n", "m"); !got.IsZero() {
		t.Errorf("LastUsed before Touch = %v, want zero", got)
	}
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	u.Touch("n", "m", now)
	u.Touch("n", "m", now.Add(-time.Minute))
	u.Touch("n", "m", time.Time{})
	if got := u.LastUsed("n", "m"); !got.Equal(now) {
		t.Errorf("LastUsed = %v, want %v", got, now)
	}
	u.Touch("n", "m", now.Add(time.Second))
	if got := u.LastUsed("n", "m"); !got.Equal(now.Add(time.Second)) {
		t.Errorf("LastUsed = %v, want %v", got, now.Add(time.Second))
	}
}

func TestCounterDoneWithoutAddPanics(t *testing.T) {
	t.Parallel()
	var c route.Counter
	defer func() {
		if recover() == nil {
			t.Error("Done without Add did not panic")
		}
		if got := c.InFlight(); got != 0 {
			t.Errorf("InFlight after the bad Done = %d, want 0", got)
		}
	}()
	c.Done()
}

func TestNilCounter(t *testing.T) {
	t.Parallel()
	var c *route.Counter
	if c.InFlight() != 0 || !c.LastUsed().IsZero() {
		t.Error("nil Counter is not empty")
	}
}

func TestUsageConcurrent(t *testing.T) {
	t.Parallel()
	u := route.NewUsage()
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	const workers, each = 8, 200
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				u.Add("n", "m")
				u.Touch("n", "m", base.Add(time.Duration(w*each+i)))
				u.Done("n", "m")
			}
		})
	}
	wg.Wait()
	if got := u.InFlight("n", "m"); got != 0 {
		t.Errorf("InFlight = %d, want 0", got)
	}
	if got, want := u.LastUsed("n", "m"), base.Add(workers*each-1); !got.Equal(want) {
		t.Errorf("LastUsed = %v, want %v", got, want)
	}
}

func TestCounterDoesNotAllocate(t *testing.T) {
	c := route.NewUsage().Counter("n", "m")
	now := time.Now()
	allocs := testing.AllocsPerRun(100, func() {
		c.Add()
		c.Touch(now)
		_ = c.InFlight()
		c.Done()
	})
	if allocs != 0 {
		t.Errorf("Counter methods allocate %v times, want 0", allocs)
	}
}
