package metering_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/helexa-ai/helexa-go/cortex/metering"
)

var cmpSorted = cmpopts.SortSlices(func(a, b string) bool { return a < b })

// recorder is a Meter that appends its name and the record's model to a log.
type recorder struct {
	name string
	log  *[]string
}

func (r recorder) Record(rec metering.Record) { *r.log = append(*r.log, r.name+":"+rec.Model) }

func TestMulti(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   func(log *[]string) []metering.Meter
		want []string
	}{
		{name: "none", in: func(*[]string) []metering.Meter { return nil }},
		{name: "only nils", in: func(*[]string) []metering.Meter { return []metering.Meter{nil, nil} }},
		{
			name: "in order, nils skipped",
			in: func(log *[]string) []metering.Meter {
				return []metering.Meter{recorder{"a", log}, nil, recorder{"b", log}}
			},
			want: []string{"a:m", "b:m"},
		},
		{
			name: "nested flattened",
			in: func(log *[]string) []metering.Meter {
				return []metering.Meter{
					metering.Multi(recorder{"a", log}, recorder{"b", log}),
					recorder{"c", log},
					metering.Func(func(r metering.Record) { *log = append(*log, "f:"+r.Model) }),
				}
			},
			want: []string{"a:m", "b:m", "c:m", "f:m"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var log []string
			m := metering.Multi(tt.in(&log)...)
			m.Record(metering.Record{Model: "m"})
			if diff := cmp.Diff(log, tt.want); diff != "" {
				t.Errorf("calls (-got +want):\n%s", diff)
			}
		})
	}
}

func TestMultiShapes(t *testing.T) {
	t.Parallel()
	if _, ok := metering.Multi().(metering.Discard); !ok {
		t.Errorf("Multi() = %T, want Discard", metering.Multi())
	}
	var log []string
	one := recorder{"a", &log}
	if got := metering.Multi(nil, one); got != metering.Meter(one) {
		t.Errorf("Multi(nil, m) = %#v, want m itself", got)
	}
	// A nil Func and Discard accept records without effect.
	metering.Func(nil).Record(metering.Record{})
	metering.Discard{}.Record(metering.Record{})
	if !slices.Equal(log, nil) {
		t.Errorf("log = %s", strings.Join(log, ","))
	}
}
