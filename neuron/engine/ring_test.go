package engine_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/helexa-ai/helexa-go/neuron/engine"
)

func TestRing(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		size  int
		add   int
		lastN int
		want  []string
	}{
		{name: "empty", size: 3, add: 0, want: []string{}},
		{name: "partial", size: 3, add: 2, want: []string{"l1", "l2"}},
		{name: "exactly full", size: 3, add: 3, want: []string{"l1", "l2", "l3"}},
		{name: "wrapped", size: 3, add: 7, want: []string{"l5", "l6", "l7"}},
		{name: "last n", size: 3, add: 7, lastN: 2, want: []string{"l6", "l7"}},
		{name: "last n over size", size: 3, add: 2, lastN: 5, want: []string{"l1", "l2"}},
		{name: "size one", size: 1, add: 4, want: []string{"l4"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := engine.NewRing(tt.size)
			for i := 1; i <= tt.add; i++ {
				r.Add(fmt.Sprintf("l%d", i))
			}
			if diff := cmp.Diff(r.Last(tt.lastN), tt.want); diff != "" {
				t.Errorf("Last(%d) (-got +want):\n%s", tt.lastN, diff)
			}
		})
	}
}

func TestRingSince(t *testing.T) {
	t.Parallel()
	r := engine.NewRing(4)
	r.Add("old1")
	r.Add("old2")
	mark := r.Mark()
	if got := r.Since(mark, 0); len(got) != 0 {
		t.Errorf("Since(mark) before new lines = %q, want none", got)
	}
	for i := 1; i <= 6; i++ {
		r.Add(fmt.Sprintf("new%d", i))
	}
	if diff := cmp.Diff(r.Since(mark, 0), []string{"new3", "new4", "new5", "new6"}); diff != "" {
		t.Errorf("Since(mark, 0) (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(r.Since(mark, 2), []string{"new5", "new6"}); diff != "" {
		t.Errorf("Since(mark, 2) (-got +want):\n%s", diff)
	}
}

func TestRingReadFrom(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 10000)
	in := "one\r\ntwo\n\n" + long + "\nlast without newline"
	r := engine.NewRing(10)
	r.Consume(strings.NewReader(in))
	want := []string{"one", "two", "", strings.Repeat("x", 4096), "last without newline"}
	if diff := cmp.Diff(r.Last(0), want); diff != "" {
		t.Errorf("lines (-got +want):\n%s", diff)
	}
}
