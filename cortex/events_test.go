package cortex

import (
	"strconv"
	"sync"
	"testing"
	"time"
)

func TestEventLogKeepsTheNewest(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		in    int // events added, model "m<i>"
		first string
		last  string
		want  int
	}{
		{name: "empty", in: 0, want: 0},
		{name: "one", in: 1, first: "m0", last: "m0", want: 1},
		{name: "full", in: DefaultEventLogSize, first: "m99", last: "m0", want: DefaultEventLogSize},
		{name: "wrapped", in: DefaultEventLogSize + 37, first: "m136", last: "m37", want: DefaultEventLogSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var l eventLog
			for i := range tt.in {
				l.add(Event{Time: t0.Add(time.Duration(i) * time.Second), Kind: EventLoad, Model: "m" + strconv.Itoa(i)})
			}
			got := l.recent()
			if len(got) != tt.want {
				t.Fatalf("%d events, want %d", len(got), tt.want)
			}
			if tt.want == 0 {
				return
			}
			if got[0].Model != tt.first || got[len(got)-1].Model != tt.last {
				t.Errorf("newest %s, oldest %s; want %s and %s", got[0].Model, got[len(got)-1].Model, tt.first, tt.last)
			}
			for i := 1; i < len(got); i++ {
				if !got[i].Time.Before(got[i-1].Time) {
					t.Fatalf("event %d is not older than event %d", i, i-1)
				}
			}
		})
	}
}

func TestEventLogConcurrentUse(t *testing.T) {
	t.Parallel()
	var l eventLog
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				l.add(Event{Kind: EventEvict})
				_ = l.recent()
			}
		})
	}
	wg.Wait()
	if n := len(l.recent()); n != DefaultEventLogSize {
		t.Errorf("%d events, want %d", n, DefaultEventLogSize)
	}
}
