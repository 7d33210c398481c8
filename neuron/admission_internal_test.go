package neuron

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/helexa-ai/helexa-go/clock"
	"github.com/helexa-ai/helexa-go/clock/clocktest"
)

func TestAdmission_FIFOAndHandOff(t *testing.T) {
	t.Parallel()
	a := newAdmission(AdmissionConfig{MaxInFlight: 1, MaxQueue: 3, MaxWait: Duration(time.Hour)}, clock.System{})
	rel, err := a.acquire(t.Context(), "m", "")
	if err != nil {
		t.Fatal(err)
	}
	order := make(chan int, 3)
	var wg sync.WaitGroup
	for i := range 3 {
		// Queue the waiters one after the other so their order is known.
		wg.Go(func() {
			r, err := a.acquire(context.Background(), "m", "")
			if err != nil {
				t.Errorf("waiter %d: %v", i, err)
				return
			}
			order <- i
			r()
		})
		waitFor(t, func() bool { _, q := a.counts("m"); return q == i+1 })
	}
	if _, err := a.acquire(t.Context(), "m", ""); !errors.Is(err, ErrQueueFull) {
		t.Errorf("fourth waiter: %v, want ErrQueueFull", err)
	}
	rel()
	rel() // a second release has no effect
	wg.Wait()
	close(order)
	var got []int
	for i := range order {
		got = append(got, i)
	}
	if diff := cmp.Diff(got, []int{0, 1, 2}); diff != "" {
		t.Errorf("order (-got +want):\n%s", diff)
	}
	if n, q := a.counts("m"); n != 0 || q != 0 || len(a.models) != 0 {
		t.Errorf("after all released: in flight %d, queued %d, gates %d", n, q, len(a.models))
	}
}

func TestAdmission_CancelRacingHandOffLeaksNothing(t *testing.T) {
	t.Parallel()
	a := newAdmission(AdmissionConfig{MaxInFlight: 2, MaxQueue: 64, MaxWait: Duration(time.Hour), PerPrincipal: 50}, clock.System{})
	var wg sync.WaitGroup
	for i := range 400 {
		wg.Go(func() {
			ctx, cancel := context.WithCancel(context.Background())
			if i%2 == 0 {
				cancel() // some give up at once, some while queued, some after a hand-off
			} else {
				defer cancel()
				go cancel()
			}
			rel, err := a.acquire(ctx, "m", string(rune('a'+i%3)))
			if err != nil {
				return
			}
			rel()
		})
	}
	wg.Wait()
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.models) != 0 {
		g := a.models["m"]
		t.Fatalf("gate left behind: in flight %d, queued %d, principals %v", g.inFlight, len(g.waiters), g.principal)
	}
}

func TestAdmission_TimeoutAndUnload(t *testing.T) {
	t.Parallel()
	clk := clocktest.New(time.Unix(0, 0))
	a := newAdmission(AdmissionConfig{MaxInFlight: 1, MaxWait: Duration(time.Minute)}, clk)
	rel, err := a.acquire(t.Context(), "m", "")
	if err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() {
		_, err := a.acquire(t.Context(), "m", "")
		waited <- err
	}()
	if err := clk.WaitArmed(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute)
	if err := <-waited; !errors.Is(err, ErrQueueTimeout) {
		t.Errorf("waiter: %v, want ErrQueueTimeout", err)
	}
	if err := a.beginUnload("m", false); !errors.Is(err, ErrModelBusy) {
		t.Errorf("unload while busy: %v, want ErrModelBusy", err)
	}
	if err := a.beginUnload("m", true); err != nil {
		t.Errorf("forced unload: %v", err)
	}
	if _, err := a.acquire(t.Context(), "m", ""); !errors.Is(err, ErrNotReady) {
		t.Errorf("acquire while unloading: %v, want ErrNotReady", err)
	}
	rel()
	a.endUnload("m")
	if len(a.models) != 0 {
		t.Errorf("gates left: %d", len(a.models))
	}
	if err := a.beginUnload("idle", false); err != nil {
		t.Errorf("unload idle: %v", err)
	}
	a.endUnload("idle")
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(time.Millisecond)
	}
}

func BenchmarkAdmission(b *testing.B) {
	b.Run("uncontended", func(b *testing.B) {
		a := newAdmission(AdmissionConfig{}, clock.System{})
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			rel, err := a.acquire(ctx, "m", "")
			if err != nil {
				b.Fatal(err)
			}
			rel()
		}
	})
	b.Run("parallel", func(b *testing.B) {
		a := newAdmission(AdmissionConfig{MaxInFlight: 4, MaxQueue: 1 << 16, MaxWait: Duration(time.Hour)}, clock.System{})
		ctx := context.Background()
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				rel, err := a.acquire(ctx, "m", "p")
				if err != nil {
					b.Error(err)
					return
				}
				rel()
			}
		})
	})
}

func TestChooseDevices(t *testing.T) {
	t.Parallel()
	devs := []Device{{Index: 0, TotalMB: 24000}, {Index: 1, TotalMB: 24000}, {Index: 2, TotalMB: 48000}}
	type want struct {
		Devices []int
		PerMB   uint64
	}
	tests := []struct {
		name    string
		devs    []Device
		free    map[int]uint64
		want    []int
		vram    uint64
		out     want
		wantErr error
		wantVE  *VRAMError
	}{
		{name: "no GPU, nothing asked", devs: nil, vram: 5000, out: want{}},
		{name: "no GPU, device asked", devs: nil, want: []int{0}, wantErr: ErrInvalidRequest},
		{name: "no VRAM: the freest device", devs: devs, free: map[int]uint64{0: 10, 1: 30, 2: 20}, out: want{Devices: []int{1}}},
		{name: "fits on the freest", devs: devs, free: map[int]uint64{0: 24000, 1: 24000, 2: 48000}, vram: 30000, out: want{Devices: []int{2}, PerMB: 30000}},
		{name: "tie goes to the lower index", devs: devs, free: map[int]uint64{0: 24000, 1: 24000, 2: 0}, vram: 1000, out: want{Devices: []int{0}, PerMB: 1000}},
		{name: "fewest devices that fit", devs: devs, free: map[int]uint64{0: 20000, 1: 24000, 2: 30000}, vram: 48000, out: want{Devices: []int{1, 2}, PerMB: 24000}},
		{name: "even split needs a third device", devs: devs, free: map[int]uint64{0: 20000, 1: 24000, 2: 30000}, vram: 50000, out: want{Devices: []int{0, 1, 2}, PerMB: 16667}},
		{name: "all three", devs: devs, free: map[int]uint64{0: 20000, 1: 24000, 2: 30000}, vram: 60000, out: want{Devices: []int{0, 1, 2}, PerMB: 20000}},
		{name: "does not fit", devs: devs, free: map[int]uint64{0: 20000, 1: 24000, 2: 30000}, vram: 61000, wantVE: &VRAMError{FreeMB: 60000, RequiredMB: 61000}},
		{name: "named devices fit", devs: devs, free: map[int]uint64{0: 20000, 1: 24000, 2: 30000}, want: []int{2, 0}, vram: 40000, out: want{Devices: []int{2, 0}, PerMB: 20000}},
		{name: "named devices do not fit", devs: devs, free: map[int]uint64{0: 10000, 1: 24000, 2: 30000}, want: []int{2, 0}, vram: 40000, wantVE: &VRAMError{FreeMB: 20000, RequiredMB: 40000}},
		{name: "named unknown device", devs: devs, free: map[int]uint64{0: 1, 1: 1, 2: 1}, want: []int{5}, wantErr: ErrInvalidRequest},
		{name: "named twice", devs: devs, free: map[int]uint64{0: 1, 1: 1, 2: 1}, want: []int{1, 1}, wantErr: ErrInvalidRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, per, err := chooseDevices(tt.devs, tt.free, tt.want, tt.vram)
			switch {
			case tt.wantVE != nil:
				var ve *VRAMError
				if !errors.As(err, &ve) || *ve != *tt.wantVE {
					t.Fatalf("error = %v, want %v", err, tt.wantVE)
				}
				return
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("error = %v, want %v", err, tt.wantErr)
				}
				return
			case err != nil:
				t.Fatal(err)
			}
			if diff := cmp.Diff(want{Devices: got, PerMB: per}, tt.out); diff != "" {
				t.Errorf("(-got +want):\n%s", diff)
			}
		})
	}
}

func TestAPIErrorFor(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   error
		want APIError
	}{
		{name: "vram", in: &VRAMError{FreeMB: 1, RequiredMB: 2}, want: APIError{Status: 409, Code: CodeInsufficientVRAM, FreeMB: 1, RequiredMB: 2}},
		{name: "not ready", in: ErrNotReady, want: APIError{Status: 503, Code: CodeModelNotReady, RetryAfter: 5 * time.Second}},
		{name: "queue full", in: ErrQueueFull, want: APIError{Status: 503, Code: CodeQueueFull, RetryAfter: time.Second}},
		{name: "rate limited", in: ErrRateLimited, want: APIError{Status: 429, Code: CodeRateLimitExceeded, RetryAfter: time.Second}},
		{name: "claim table full", in: fmt.Errorf("%w: 2 live claims", ErrClaimTableFull), want: APIError{Status: 503, Code: CodeClaimTableFull}},
		{name: "unexpected", in: errors.New("boom"), want: APIError{Status: 500, Code: CodeInternal}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := *apiErrorFor(tt.in)
			got.Message = ""
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("(-got +want):\n%s", diff)
			}
		})
	}
}

// A reload that raises max_in_flight admits the queued requests at once;
// the request in flight keeps its slot.
func TestAdmission_SetRaisesLimit(t *testing.T) {
	t.Parallel()
	a := newAdmission(AdmissionConfig{MaxInFlight: 1, MaxQueue: 8, MaxWait: Duration(time.Hour)}, clock.System{})
	rel, err := a.acquire(t.Context(), "m", "")
	if err != nil {
		t.Fatal(err)
	}
	admitted := make(chan func(), 2)
	for range 2 {
		go func() {
			r, err := a.acquire(context.Background(), "m", "")
			if err != nil {
				t.Errorf("queued request: %v", err)
				admitted <- func() {}
				return
			}
			admitted <- r
		}()
	}
	waitFor(t, func() bool { _, q := a.counts("m"); return q == 2 })
	a.set(AdmissionConfig{MaxInFlight: 3, MaxQueue: 8, MaxWait: Duration(time.Hour)})
	r1, r2 := <-admitted, <-admitted
	if n, q := a.counts("m"); n != 3 || q != 0 {
		t.Errorf("after raising the limit: in flight %d, queued %d; want 3, 0", n, q)
	}
	rel()
	r1()
	r2()
	if n, q := a.counts("m"); n != 0 || q != 0 || len(a.models) != 0 {
		t.Errorf("after all released: in flight %d, queued %d, gates %d", n, q, len(a.models))
	}
}
