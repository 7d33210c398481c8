package clocktest_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/helexa-ai/helexa-go/clock/clocktest"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// received returns what ch holds now, or the zero time.
func received(ch <-chan time.Time) time.Time {
	select {
	case v := <-ch:
		return v
	default:
		return time.Time{}
	}
}

func TestTimerFiresOnceWhenDue(t *testing.T) {
	t.Parallel()
	f := clocktest.New(t0)
	tm := f.NewTimer(time.Second)
	f.Advance(999 * time.Millisecond)
	if got := received(tm.C()); !got.IsZero() {
		t.Fatalf("fired early, at %v", got)
	}
	f.Advance(5 * time.Second)
	if got, want := received(tm.C()), t0.Add(time.Second); !got.Equal(want) {
		t.Errorf("delivered %v, want its due time %v", got, want)
	}
	if got, want := f.Now(), t0.Add(5999*time.Millisecond); !got.Equal(want) {
		t.Errorf("Now() = %v, want %v", got, want)
	}
	if f.Armed() != 0 || tm.Stop() {
		t.Errorf("a fired timer: Armed() = %d, Stop() true", f.Armed())
	}
}

func TestStopAndResetDropAnEarlierTime(t *testing.T) {
	t.Parallel()
	f := clocktest.New(t0)
	tm := f.NewTimer(time.Second)
	f.Advance(time.Second) // delivered, unread
	if tm.Reset(time.Second) {
		t.Error("Reset of a fired timer reported it armed")
	}
	if got := received(tm.C()); !got.IsZero() {
		t.Errorf("after Reset the channel held %v", got)
	}
	if !tm.Stop() || tm.Stop() {
		t.Error("Stop of an armed timer: want true, then false")
	}
	f.Advance(time.Hour)
	if got := received(tm.C()); !got.IsZero() {
		t.Errorf("a stopped timer delivered %v", got)
	}
}

func TestEventsFireInOrderWithNowAtTheirDueTime(t *testing.T) {
	t.Parallel()
	f := clocktest.New(t0)
	var got []time.Duration
	note := func() { got = append(got, f.Now().Sub(t0)) }
	f.AfterFunc(3*time.Second, note)
	f.AfterFunc(time.Second, func() {
		note()
		f.AfterFunc(time.Second, note) // armed while the time moves: due at 2s
	})
	tick, stop := f.NewTicker(1500 * time.Millisecond)
	defer stop()
	f.Advance(4 * time.Second)
	if diff := cmp.Diff(got, []time.Duration{time.Second, 2 * time.Second, 3 * time.Second}); diff != "" {
		t.Errorf("functions ran at (-got +want):\n%s", diff)
	}
	// The ticker fired at 1.5 s and 3 s; the channel kept the first.
	if got, want := received(tick), t0.Add(1500*time.Millisecond); !got.Equal(want) {
		t.Errorf("tick %v, want %v", got, want)
	}
	f.Advance(500 * time.Millisecond)
	if got, want := received(tick), t0.Add(4500*time.Millisecond); !got.Equal(want) {
		t.Errorf("tick %v, want %v", got, want)
	}
	stop()
	if n := f.Armed(); n != 0 {
		t.Errorf("Armed() = %d after everything fired or stopped, want 0", n)
	}
}

func TestZeroTimerFiresAtOnce(t *testing.T) {
	t.Parallel()
	f := clocktest.New(t0)
	if got := received(f.NewTimer(0).C()); !got.Equal(t0) {
		t.Errorf("NewTimer(0) delivered %v, want %v", got, t0)
	}
	ran := make(chan struct{})
	f.AfterFunc(-time.Second, func() { close(ran) })
	<-ran
}

func TestWaitArmed(t *testing.T) {
	t.Parallel()
	f := clocktest.New(t0)
	go func() {
		f.NewTimer(time.Second)
		f.AfterFunc(time.Second, func() {})
	}()
	if err := f.WaitArmed(t.Context(), 2); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := f.WaitArmed(ctx, 3); err != context.Canceled {
		t.Errorf("WaitArmed with an ended ctx: %v, want context.Canceled", err)
	}
}

func TestSetBackwardFiresNothing(t *testing.T) {
	t.Parallel()
	f := clocktest.New(t0)
	tm := f.NewTimer(time.Second)
	f.Advance(-time.Hour)
	f.Set(t0.Add(999 * time.Millisecond))
	if got := received(tm.C()); !got.IsZero() {
		t.Errorf("fired at %v", got)
	}
	if got, want := f.Now(), t0.Add(999*time.Millisecond); !got.Equal(want) {
		t.Errorf("Now() = %v, want %v", got, want)
	}
}
