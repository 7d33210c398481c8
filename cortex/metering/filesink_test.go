package metering_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/helexa-ai/helexa-go/clock/clocktest"
	"github.com/helexa-ai/helexa-go/cortex/metering"
)

// rec returns a record whose JSON line has the same length for every i
// below 10000.
func rec(i int) metering.Record {
	r := goldenRecord
	r.Time = r.Time.UTC()
	r.Duration = time.Second // whole ms: survives the round trip
	r.RequestID = fmt.Sprintf("req-%04d", i)
	return r
}

func lineLen(t *testing.T) int64 {
	t.Helper()
	b, err := json.Marshal(rec(0))
	if err != nil {
		t.Fatal(err)
	}
	return int64(len(b)) + 1 // newline
}

// readRecords parses every line of path; bad lines are returned as "".
func readRecords(t *testing.T, path string) (recs []metering.Record, bad int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r metering.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			bad++
			continue
		}
		recs = append(recs, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return recs, bad
}

func ids(recs []metering.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.RequestID
	}
	return out
}

func idRange(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, rec(i).RequestID)
	}
	return out
}

func newSink(t *testing.T, path string, opts ...metering.Option) *metering.FileSink {
	t.Helper()
	s, err := metering.NewFileSink(path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// waitFor polls cond until it holds or the test's deadline is near.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline, ok := t.Deadline()
	if !ok {
		deadline = time.Now().Add(30 * time.Second)
	} else {
		deadline = deadline.Add(-time.Second)
	}
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestNewFileSinkErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tests := []struct {
		name string
		path string
		opts []metering.Option
	}{
		{name: "no path", path: ""},
		{name: "max bytes 0", path: filepath.Join(dir, "a"), opts: []metering.Option{metering.WithMaxBytes(0)}},
		{name: "negative backups", path: filepath.Join(dir, "a"), opts: []metering.Option{metering.WithMaxBackups(-1)}},
		{name: "buffer 0", path: filepath.Join(dir, "a"), opts: []metering.Option{metering.WithBuffer(0)}},
		{name: "negative flush", path: filepath.Join(dir, "a"), opts: []metering.Option{metering.WithFlushInterval(-time.Second)}},
		{name: "directory", path: dir},
		{name: "missing directory", path: filepath.Join(dir, "no", "such", "file")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := metering.NewFileSink(tt.path, tt.opts...)
			if err == nil {
				s.Close(t.Context())
				t.Fatal("NewFileSink succeeded, want an error")
			}
		})
	}
}

func TestFileSinkWritesLinesInOrder(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "meter.jsonl")
	if err := os.WriteFile(path, []byte(goldenLine+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	clock := time.Date(2030, 5, 6, 7, 8, 9, 10, time.UTC)
	s := newSink(t, path, metering.WithClock(clocktest.New(clock)))
	const n = 300
	var want []metering.Record
	for i := range n {
		r := rec(i)
		if i%2 == 1 {
			r.Time = time.Time{} // stamped by the sink
		}
		s.Record(r)
		if i%2 == 1 {
			r.Time = clock
		}
		want = append(want, r)
	}
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	got, bad := readRecords(t, path)
	if bad != 0 {
		t.Errorf("%d bad lines", bad)
	}
	if len(got) == 0 || got[0].RequestID != goldenRecord.RequestID {
		t.Fatalf("existing line not kept: first = %+v", got[:min(1, len(got))])
	}
	if diff := cmp.Diff(got[1:], want); diff != "" {
		t.Errorf("records (-got +want):\n%s", diff)
	}
	if s.Written() != n || s.Dropped() != 0 || s.WriteErrors() != 0 {
		t.Errorf("written %d, dropped %d, errors %d; want %d, 0, 0", s.Written(), s.Dropped(), s.WriteErrors(), n)
	}
}

func TestFileSinkCreatesFileMode0640(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "meter.jsonl")
	newSink(t, path)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	// The umask may clear bits, never add them.
	if perm := fi.Mode().Perm(); perm&^0o640 != 0 || perm&0o600 != 0o600 {
		t.Errorf("mode = %v, want 0640 less the umask", perm)
	}
}

func TestFileSinkRotation(t *testing.T) {
	t.Parallel()
	const perFile = 3
	tests := []struct {
		name    string
		backups int
		n       int // records written
		// want[i] is the ids in path (i == 0) or path.i.
		want [][]string
	}{
		{
			name:    "under the bound",
			backups: 2,
			n:       perFile,
			want:    [][]string{idRange(0, 3)},
		},
		{
			name:    "one rotation",
			backups: 2,
			n:       perFile + 1,
			want:    [][]string{idRange(3, 4), idRange(0, 3)},
		},
		{
			name:    "oldest deleted",
			backups: 2,
			n:       5*perFile + 2,
			want:    [][]string{idRange(15, 17), idRange(12, 15), idRange(9, 12)},
		},
		{
			name:    "no backups",
			backups: 0,
			n:       2*perFile + 1,
			want:    [][]string{idRange(6, 7)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path := filepath.Join(dir, "meter.jsonl")
			max := perFile * lineLen(t)
			s := newSink(t, path, metering.WithMaxBytes(max), metering.WithMaxBackups(tt.backups))
			for i := range tt.n {
				s.Record(rec(i))
			}
			if err := s.Close(t.Context()); err != nil {
				t.Fatal(err)
			}
			var got [][]string
			for i := 0; ; i++ {
				p := path
				if i > 0 {
					p = fmt.Sprintf("%s.%d", path, i)
				}
				fi, err := os.Stat(p)
				if errors.Is(err, fs.ErrNotExist) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if fi.Size() > max {
					t.Errorf("%s has %d bytes, bound %d", p, fi.Size(), max)
				}
				recs, bad := readRecords(t, p)
				if bad != 0 {
					t.Errorf("%s: %d bad lines", p, bad)
				}
				got = append(got, ids(recs))
			}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("files (-got +want):\n%s", diff)
			}
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != len(tt.want) {
				t.Errorf("%d files in the directory, want %d", len(entries), len(tt.want))
			}
			if s.Written() != uint64(tt.n) || s.WriteErrors() != 0 {
				t.Errorf("written %d, errors %d; want %d, 0", s.Written(), s.WriteErrors(), tt.n)
			}
		})
	}
}

func TestFileSinkRotatesOversizedExistingFileAndLines(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "meter.jsonl")
	if err := os.WriteFile(path, []byte("old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A bound below one line: each line is written alone into a new file.
	s := newSink(t, path, metering.WithMaxBytes(lineLen(t)/2), metering.WithMaxBackups(3))
	for i := range 2 {
		s.Record(rec(i))
	}
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	old, err := os.ReadFile(path + ".2")
	if err != nil {
		t.Fatal(err)
	}
	if string(old) != "old\n" {
		t.Errorf("path.2 = %q, want the old file", old)
	}
	for p, want := range map[string][]string{path: idRange(1, 2), path + ".1": idRange(0, 1)} {
		recs, _ := readRecords(t, p)
		if diff := cmp.Diff(ids(recs), want); diff != "" {
			t.Errorf("%s (-got +want):\n%s", p, diff)
		}
	}
}

// holdWriter returns a hook that holds the writer on the record with
// RequestID "hold" until release is closed, and a channel that receives
// once the writer is held.
func holdWriter() (hook metering.Option, held <-chan struct{}, release chan struct{}) {
	h := make(chan struct{})
	release = make(chan struct{})
	hook = metering.WithDequeueHook(func(r metering.Record) {
		if r.RequestID == "hold" {
			close(h)
			<-release
		}
	})
	return hook, h, release
}

func TestFileSinkRecordNeverBlocks(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "meter.jsonl")
	hook, held, release := holdWriter()
	const buffer = 4
	s := newSink(t, path, hook, metering.WithBuffer(buffer))
	hold := rec(0)
	hold.RequestID = "hold"
	s.Record(hold)
	<-held // the writer is stuck; the buffer is empty
	for i := range buffer + 100 {
		s.Record(rec(i)) // would deadlock here if Record waited
	}
	if got, want := s.Dropped(), uint64(100); got != want {
		t.Errorf("Dropped = %d, want %d", got, want)
	}
	if s.Written() != 0 {
		t.Errorf("Written = %d while the writer is held", s.Written())
	}
	close(release)
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	recs, _ := readRecords(t, path)
	want := append([]string{"hold"}, idRange(0, buffer)...)
	if diff := cmp.Diff(ids(recs), want); diff != "" {
		t.Errorf("records (-got +want):\n%s", diff)
	}
	if s.Written() != buffer+1 || s.Dropped() != 100 {
		t.Errorf("written %d, dropped %d; want %d, 100", s.Written(), s.Dropped(), buffer+1)
	}
}

func TestFileSinkCloseGivesUpWithContext(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "meter.jsonl")
	hook, held, release := holdWriter()
	s, err := metering.NewFileSink(path, hook, metering.WithBuffer(8))
	if err != nil {
		t.Fatal(err)
	}
	hold := rec(0)
	hold.RequestID = "hold"
	s.Record(hold)
	<-held
	for i := range 5 {
		s.Record(rec(i))
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.Close(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Close with a cancelled context = %v, want context.Canceled", err)
	}
	s.Record(rec(9)) // after Close: dropped
	close(release)
	if err := s.Close(t.Context()); err != nil { // waits for the writer
		t.Fatal(err)
	}
	recs, _ := readRecords(t, path)
	if diff := cmp.Diff(ids(recs), []string{"hold"}); diff != "" {
		t.Errorf("records (-got +want):\n%s", diff)
	}
	if s.Written() != 1 || s.Dropped() != 6 {
		t.Errorf("written %d, dropped %d; want 1, 6", s.Written(), s.Dropped())
	}
}

func TestFileSinkCloseIsIdempotent(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "meter.jsonl")
	s, err := metering.NewFileSink(path, metering.WithFlushInterval(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		s.Record(rec(i))
	}
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			if err := s.Close(t.Context()); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
	wg.Wait()
	if err := s.Close(t.Context()); err != nil {
		t.Errorf("Close again: %v", err)
	}
	s.Record(rec(10))
	recs, _ := readRecords(t, path)
	if diff := cmp.Diff(ids(recs), idRange(0, 10)); diff != "" {
		t.Errorf("records (-got +want):\n%s", diff)
	}
	if s.Written() != 10 || s.Dropped() != 1 {
		t.Errorf("written %d, dropped %d; want 10, 1", s.Written(), s.Dropped())
	}
}

func TestFileSinkConcurrentRecord(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "meter.jsonl")
	const workers, each = 4, 250
	const backups = 100
	s := newSink(t, path, metering.WithBuffer(workers*each), metering.WithMaxBytes(16<<10),
		metering.WithMaxBackups(backups))
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				r := rec(i)
				r.KeyID = fmt.Sprint("w", w)
				s.Record(r)
			}
		})
	}
	wg.Wait()
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if s.Written() != workers*each || s.Dropped() != 0 {
		t.Fatalf("written %d, dropped %d; want %d, 0", s.Written(), s.Dropped(), workers*each)
	}
	// Every worker's records appear, in its order, across the rotated files
	// (oldest first).
	var all []metering.Record
	for i := backups; i >= 0; i-- {
		p := path
		if i > 0 {
			p = fmt.Sprintf("%s.%d", path, i)
		}
		if _, err := os.Stat(p); err != nil {
			continue
		}
		recs, bad := readRecords(t, p)
		if bad != 0 {
			t.Errorf("%s: %d bad lines", p, bad)
		}
		all = append(all, recs...)
	}
	next := map[string]int{}
	for _, r := range all {
		if want := rec(next[r.KeyID]).RequestID; r.RequestID != want {
			t.Fatalf("worker %s: got %s, want %s", r.KeyID, r.RequestID, want)
		}
		next[r.KeyID]++
	}
	for w, n := range next {
		if n != each {
			t.Errorf("worker %s: %d records, want %d", w, n, each)
		}
	}
	if _, err := os.Stat(path + ".2"); err != nil {
		t.Errorf("no rotation happened: %v", err)
	}
}

// failingWriter fails its writes while fail is set, after writing partial
// bytes of each.
type failingWriter struct {
	w       io.Writer
	fail    *atomic.Bool
	partial int
}

var errDiskFull = errors.New("disk full")

func (f failingWriter) Write(b []byte) (int, error) {
	if !f.fail.Load() {
		return f.w.Write(b)
	}
	n, _ := f.w.Write(b[:min(f.partial, len(b))])
	return n, errDiskFull
}

func TestFileSinkWriteErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		partial int
		wantBad int // lines that do not parse
	}{
		{name: "nothing written", partial: 0},
		{name: "partial line", partial: 10, wantBad: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "meter.jsonl")
			var fail atomic.Bool
			wrap := metering.WithWriterWrap(func(w io.Writer) io.Writer {
				return failingWriter{w: w, fail: &fail, partial: tt.partial}
			})
			s := newSink(t, path, wrap, metering.WithFlushInterval(0))
			s.Record(rec(0))
			waitFor(t, "the first write", func() bool { return s.Written() == 1 })
			fail.Store(true)
			s.Record(rec(1))
			waitFor(t, "the failed write", func() bool { return s.Dropped() == 1 })
			if s.WriteErrors() == 0 {
				t.Error("WriteErrors = 0 after a failed write")
			}
			fail.Store(false)
			s.Record(rec(2))
			waitFor(t, "the write after recovery", func() bool { return s.Written() == 2 })
			if err := s.Close(t.Context()); err != nil {
				t.Fatal(err)
			}
			recs, bad := readRecords(t, path)
			if diff := cmp.Diff(ids(recs), []string{rec(0).RequestID, rec(2).RequestID}); diff != "" {
				t.Errorf("records (-got +want):\n%s", diff)
			}
			if bad != tt.wantBad {
				t.Errorf("%d bad lines, want %d", bad, tt.wantBad)
			}
		})
	}
}

func TestFileSinkRecoversFromMissingDirectory(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "logs")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "meter.jsonl")
	// One line per file, so every record after the first rotates.
	s := newSink(t, path, metering.WithMaxBytes(lineLen(t)), metering.WithFlushInterval(0))
	s.Record(rec(0))
	waitFor(t, "the first write", func() bool { return s.Written() == 1 })

	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	s.Record(rec(1)) // rotation cannot reopen the file; the record is lost
	waitFor(t, "the lost record", func() bool { return s.Dropped() == 1 })
	if s.WriteErrors() == 0 {
		t.Error("WriteErrors = 0 after the directory vanished")
	}

	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	s.Record(rec(2))
	waitFor(t, "the write after recovery", func() bool { return s.Written() == 2 })
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	recs, _ := readRecords(t, path)
	if diff := cmp.Diff(ids(recs), idRange(2, 3)); diff != "" {
		t.Errorf("records (-got +want):\n%s", diff)
	}
}

func TestFileSinkFlushInterval(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "meter.jsonl")
	// Records reach the file within the interval, without Close.
	clock := clocktest.New(time.Date(2030, 5, 6, 7, 8, 9, 10, time.UTC))
	taken := make(chan struct{})
	s := newSink(t, path, metering.WithClock(clock), metering.WithFlushInterval(time.Minute),
		metering.WithDequeueHook(func(metering.Record) { close(taken) }))
	s.Record(rec(0))
	<-taken
	if b, err := os.ReadFile(path); err == nil && len(b) > 0 {
		t.Fatalf("written before the interval: %q", b)
	}
	if err := clock.WaitArmed(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Minute)
	waitFor(t, "the timed flush", func() bool {
		b, err := os.ReadFile(path)
		return err == nil && strings.Contains(string(b), rec(0).RequestID)
	})
	if s.Written() != 1 {
		t.Errorf("Written = %d, want 1", s.Written())
	}
}

// Not parallel: AllocsPerRun counts the whole process's allocations.
func TestFileSinkRecordDoesNotAllocate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meter.jsonl")
	hook, held, release := holdWriter()
	s := newSink(t, path, hook, metering.WithBuffer(200))
	defer close(release)
	hold := rec(0)
	hold.RequestID = "hold"
	s.Record(hold)
	<-held // only Record runs from here on
	r := rec(1)
	r.Time = time.Time{} // stamped
	if n := testing.AllocsPerRun(500, func() { s.Record(r) }); n != 0 {
		t.Errorf("Record allocates %v times per call, want 0", n)
	}
	if s.Dropped() == 0 {
		t.Error("the buffer never filled: the drop path was not measured")
	}
}
