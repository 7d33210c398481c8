package metering_test

import (
	"path/filepath"
	"runtime"
	"testing"

	"github.com/helexa-ai/helexa-go/cortex/metering"
	"github.com/prometheus/client_golang/prometheus"
)

// BenchmarkFileSinkRecord measures Record, the request path's cost: one
// enqueue (or a counted drop when the writer falls behind). drops/op shows
// how much of the load the writer could not keep up with.
func BenchmarkFileSinkRecord(b *testing.B) {
	for _, parallel := range []bool{false, true} {
		name := "serial"
		if parallel {
			name = "parallel"
		}
		b.Run(name, func(b *testing.B) {
			s, err := metering.NewFileSink(filepath.Join(b.TempDir(), "meter.jsonl"))
			if err != nil {
				b.Fatal(err)
			}
			r := rec(1)
			b.ReportAllocs()
			if parallel {
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						s.Record(r)
					}
				})
			} else {
				for b.Loop() {
					s.Record(r)
				}
			}
			b.StopTimer()
			if err := s.Close(b.Context()); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(s.Dropped())/float64(b.N), "drops/op")
		})
	}
}

// BenchmarkFileSinkEnqueue measures Record when the buffer always has room:
// every 4096 records the timer stops until the writer has caught up, so no
// record is dropped.
func BenchmarkFileSinkEnqueue(b *testing.B) {
	const batch = 4096
	s, err := metering.NewFileSink(filepath.Join(b.TempDir(), "meter.jsonl"),
		metering.WithBuffer(batch), metering.WithFlushInterval(0), metering.WithMaxBytes(1<<30))
	if err != nil {
		b.Fatal(err)
	}
	r := rec(1)
	var sent uint64
	b.ReportAllocs()
	for b.Loop() {
		s.Record(r)
		if sent++; sent%batch == 0 {
			b.StopTimer()
			for s.Written()+s.Dropped() < sent {
				runtime.Gosched()
			}
			b.StartTimer()
		}
	}
	b.StopTimer()
	if err := s.Close(b.Context()); err != nil {
		b.Fatal(err)
	}
	if s.Dropped() != 0 {
		b.Fatalf("%d records dropped", s.Dropped())
	}
}

// BenchmarkFileSinkThroughput measures the writer: records encoded and
// written to the file per second, from Record to Close.
func BenchmarkFileSinkThroughput(b *testing.B) {
	s, err := metering.NewFileSink(filepath.Join(b.TempDir(), "meter.jsonl"),
		metering.WithBuffer(max(b.N, 1)), metering.WithMaxBytes(1<<30))
	if err != nil {
		b.Fatal(err)
	}
	r := rec(1)
	b.ResetTimer()
	for range b.N {
		s.Record(r)
	}
	if err := s.Close(b.Context()); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if s.Written() != uint64(b.N) {
		b.Fatalf("written %d of %d", s.Written(), b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkAccountSpend measures the opt-in Prometheus meter's Record.
func BenchmarkAccountSpend(b *testing.B) {
	a, err := metering.NewAccountSpend(prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	r := rec(1)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			a.Record(r)
		}
	})
}
