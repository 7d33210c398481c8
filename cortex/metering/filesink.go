package metering

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
)

// FileSink is the reference Meter: it appends each record as one JSON line
// to a file, rotating the file by size (see the package documentation for
// the format and the rotation scheme).
//
// Record never blocks: it puts the record in a bounded buffer (WithBuffer)
// that one writer goroutine drains, and drops the record, counting it, when
// the buffer is full or the sink is closed. The writer collects encoded
// records and writes them with one system call per flush interval
// (WithFlushInterval) or per 64 KiB; it does not fsync.
//
// A write, open or rotation error never stops the sink: it is counted
// (WriteErrors), logged when errors start and when they stop, and the
// records of the failed write are counted as dropped. The writer reopens the
// file on its next write, so a sink recovers by itself from a full disk or a
// directory that was briefly missing. A rotation that fails is retried after
// the next flush interval; meanwhile the file grows past its bound.
//
// Every record passed to Record is, in the end, counted once by Written or
// by Dropped. Only one FileSink (or other writer) should write to a path at
// a time.
//
// A *FileSink is safe for concurrent use. Close it to stop its goroutine.
type FileSink struct {
	path string
	o    options
	log  *slog.Logger

	// mu orders sends against Close: Record sends while holding it for
	// reading, Close sets closed while holding it for writing, so no record
	// enters the buffer after the writer has been told to stop.
	mu     sync.RWMutex
	closed bool
	ch     chan Record

	quit      chan struct{} // closed by the first Close
	quitOnce  sync.Once
	abort     chan struct{} // closed by a Close whose context ended
	abortOnce sync.Once
	done      chan struct{} // closed when the writer has stopped
	closeErr  error         // the writer's result; read after done

	written     atomic.Uint64
	dropped     atomic.Uint64
	writeErrors atomic.Uint64

	// Writer state, owned by the writer goroutine.
	f           *os.File
	w           io.Writer // f, or the test hook's wrapper of it
	size        int64     // bytes in the current file, when f != nil
	buf         []byte    // encoded records not written yet
	pending     uint64    // records in buf
	enc         *json.Encoder
	encBuf      bytes.Buffer
	torn        bool   // a failed write left a partial line in the file
	failing     bool   // the last write, open or rotation failed
	rotateHeld  bool   // a rotation failed this flush interval
	lastDropped uint64 // Dropped() when drops were last reported
}

var _ Meter = (*FileSink)(nil)

// NewFileSink opens (creating if needed, mode 0640, appending) the file at
// path and starts the writer goroutine. It returns an error when an option
// is out of range or the file cannot be opened.
func NewFileSink(path string, opts ...Option) (*FileSink, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt.apply(&o)
	}
	switch {
	case path == "":
		return nil, errors.New("metering: NewFileSink needs a path")
	case o.maxBytes <= 0:
		return nil, errors.New("metering: WithMaxBytes must be > 0")
	case o.maxBackups < 0:
		return nil, errors.New("metering: WithMaxBackups must be >= 0")
	case o.buffer <= 0:
		return nil, errors.New("metering: WithBuffer must be > 0")
	case o.flushInterval < 0:
		return nil, errors.New("metering: WithFlushInterval must be >= 0")
	}
	s := &FileSink{
		path:  path,
		o:     o,
		log:   o.logger,
		ch:    make(chan Record, o.buffer),
		quit:  make(chan struct{}),
		abort: make(chan struct{}),
		done:  make(chan struct{}),
		buf:   make([]byte, 0, flushBytes),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.enc = json.NewEncoder(&s.encBuf)
	s.enc.SetEscapeHTML(false)
	if err := s.open(); err != nil {
		return nil, err
	}
	go s.run()
	return s, nil
}

// Record implements Meter. It stamps a zero r.Time with the sink's clock and
// hands r to the writer, or drops it (counted by Dropped) when the buffer is
// full or the sink is closed. It never waits for the writer.
func (s *FileSink) Record(r Record) {
	if r.Time.IsZero() {
		r.Time = s.o.clock.Now()
	}
	s.mu.RLock()
	if !s.closed {
		select {
		case s.ch <- r:
			s.mu.RUnlock()
			return
		default:
		}
	}
	s.mu.RUnlock()
	s.dropped.Add(1)
}

// Written returns how many records have been written to the file (handed to
// the operating system; not necessarily on disk).
func (s *FileSink) Written() uint64 { return s.written.Load() }

// Dropped returns how many records were not written: the buffer was full,
// the sink was closed, the record could not be encoded, or the write that
// carried it failed (after a partial write some of those may be in the
// file).
func (s *FileSink) Dropped() uint64 { return s.dropped.Load() }

// WriteErrors returns how many writes, opens, closes, rotations and record
// encodings have failed.
func (s *FileSink) WriteErrors() uint64 { return s.writeErrors.Load() }

// Close stops taking records, writes what the buffer holds, and closes the
// file. When ctx ends first, Close returns ctx.Err() and the writer drops
// (counting) the records still buffered, writes what it has already
// encoded, and closes the file without waiting for anyone.
//
// Close may be called more than once and concurrently; each call waits for
// the writer (or its ctx) and returns the same error: nil, or what failed
// while writing the last records and closing the file. Record after Close
// drops and counts.
func (s *FileSink) Close(ctx context.Context) error {
	s.quitOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		close(s.quit)
	})
	select {
	case <-s.done:
		return s.closeErr
	default:
	}
	select {
	case <-s.done:
		return s.closeErr
	case <-ctx.Done():
		s.abortOnce.Do(func() { close(s.abort) })
		return ctx.Err()
	}
}

// run is the writer goroutine.
func (s *FileSink) run() {
	defer close(s.done)
	tick := s.o.flushInterval
	if tick == 0 {
		tick = DefaultFlushInterval // to retry rotations and report drops
	}
	ticks, stop := s.o.clock.NewTicker(tick)
	defer stop()
	for {
		select {
		case <-s.quit: // before more records, so that Close is prompt
			s.closeErr = s.shutdown()
			return
		default:
		}
		select {
		case r := <-s.ch:
			s.take(r)
			if s.o.flushInterval == 0 && len(s.ch) == 0 {
				s.flush()
			}
		case <-ticks:
			s.rotateHeld = false
			s.flush()
			s.reportDrops()
		case <-s.quit:
			s.closeErr = s.shutdown()
			return
		}
	}
}

// shutdown drains the buffer (or drops what it holds when Close gave up),
// writes, and closes the file.
func (s *FileSink) shutdown() error {
	s.drain()
	err := s.flush()
	if s.f != nil {
		if cerr := s.f.Close(); cerr != nil {
			s.failure("close", cerr)
			err = errors.Join(err, cerr)
		}
		s.f = nil
	}
	s.reportDrops()
	return err
}

func (s *FileSink) drain() {
	for {
		select {
		case <-s.abort:
			// Nothing sends any more (closed is set), so the length only
			// falls, and only this goroutine receives.
			for len(s.ch) > 0 {
				<-s.ch
				s.dropped.Add(1)
			}
			return
		default:
		}
		select {
		case r := <-s.ch:
			s.take(r)
		default:
			return
		}
	}
}

// take encodes r into buf, rotating first when r would take the file past
// its bound.
func (s *FileSink) take(r Record) {
	if s.o.dequeued != nil {
		s.o.dequeued(r)
	}
	s.encBuf.Reset()
	if err := s.enc.Encode(r.wire()); err != nil {
		s.failure("encode", err)
		s.dropped.Add(1)
		return
	}
	line := s.encBuf.Bytes()
	if used := s.size + int64(len(s.buf)); !s.rotateHeld && used > 0 && used+int64(len(line)) > s.o.maxBytes {
		s.flush()
		s.rotate()
	}
	s.buf = append(s.buf, line...)
	s.pending++
	if len(s.buf) >= flushBytes {
		s.flush()
	}
}

// flush writes buf to the file, reopening it first if needed.
func (s *FileSink) flush() error {
	if len(s.buf) == 0 && !s.torn {
		return nil
	}
	n := s.pending
	s.pending = 0
	defer func() { s.buf = s.buf[:0] }()
	if s.f == nil {
		if err := s.open(); err != nil {
			s.failure("open", err)
			s.dropped.Add(n)
			return err
		}
	}
	if s.torn {
		// End the partial line of a failed write so that the next record
		// starts a line.
		if _, err := s.w.Write(newline); err != nil {
			s.failure("write", err)
			s.dropped.Add(n)
			s.closeFile()
			return err
		}
		s.size++
		s.torn = false
	}
	w, err := s.w.Write(s.buf)
	s.size += int64(w)
	if err != nil {
		s.failure("write", err)
		s.dropped.Add(n)
		s.torn = w > 0
		s.closeFile() // reopened by the next flush
		return err
	}
	s.written.Add(n)
	if s.failing {
		s.failing = false
		s.log.Info("metering: writing again", "path", s.path, "write_errors", s.writeErrors.Load())
	}
	return nil
}

var newline = []byte{'\n'}

// open opens the file for appending and reads its size.
func (s *FileSink) open() error {
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	s.f, s.w, s.size = f, f, fi.Size()
	if s.o.wrap != nil {
		s.w = s.o.wrap(f)
	}
	return nil
}

func (s *FileSink) closeFile() {
	if s.f == nil {
		return
	}
	if err := s.f.Close(); err != nil {
		s.failure("close", err)
	}
	s.f, s.w, s.size = nil, nil, 0
}

// rotate closes the file, shifts the backups and opens a new file. A failed
// shift is not retried before the next tick: the file keeps growing.
func (s *FileSink) rotate() {
	s.closeFile()
	if err := s.shift(); err != nil {
		s.failure("rotate", err)
		s.rotateHeld = true
	} else {
		s.torn = false // a partial line stays in the backup
	}
	if err := s.open(); err != nil {
		s.failure("open", err)
	}
}

// shift renames path.i to path.i+1 from the oldest down, deleting the
// oldest, then path to path.1. It stops at the first error so that no
// backup is overwritten.
func (s *FileSink) shift() error {
	n := s.o.maxBackups
	if n == 0 {
		return removeIfExists(s.path)
	}
	if err := removeIfExists(s.backup(n)); err != nil {
		return err
	}
	for i := n - 1; i >= 1; i-- {
		if err := renameIfExists(s.backup(i), s.backup(i+1)); err != nil {
			return err
		}
	}
	return renameIfExists(s.path, s.backup(1))
}

func (s *FileSink) backup(i int) string { return s.path + "." + strconv.Itoa(i) }

func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

func renameIfExists(from, to string) error {
	if err := os.Rename(from, to); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// failure counts an error and logs it when it starts a run of errors.
func (s *FileSink) failure(op string, err error) {
	s.writeErrors.Add(1)
	if !s.failing {
		s.failing = true
		s.log.Error("metering: "+op+" failed", "path", s.path, "err", err)
		return
	}
	s.log.Debug("metering: "+op+" failed", "path", s.path, "err", err)
}

// reportDrops logs the records dropped since the last report.
func (s *FileSink) reportDrops() {
	d := s.dropped.Load()
	if d > s.lastDropped {
		s.log.Warn("metering: records dropped", "path", s.path, "dropped", d-s.lastDropped, "total", d)
	}
	s.lastDropped = d
}
