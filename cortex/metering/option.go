package metering

import (
	"io"
	"log/slog"
	"time"

	"github.com/helexa-ai/helexa-go/clock"
)

// FileSink defaults.
const (
	// DefaultMaxBytes is the size a FileSink's file may reach before it is
	// rotated: 100 MiB.
	DefaultMaxBytes int64 = 100 << 20
	// DefaultMaxBackups is how many rotated files a FileSink keeps: 5.
	DefaultMaxBackups = 5
	// DefaultBuffer is how many records a FileSink holds for its writer
	// before it drops new ones: 4096.
	DefaultBuffer = 4096
	// DefaultFlushInterval is the longest a written record waits in memory
	// before it reaches the file: 1 second.
	DefaultFlushInterval = time.Second
)

// flushBytes is how much encoded data the writer collects before it writes
// without waiting for the flush interval.
const flushBytes = 64 << 10

// Option configures a FileSink.
type Option interface {
	apply(*options)
}

type options struct {
	maxBytes      int64
	maxBackups    int
	buffer        int
	flushInterval time.Duration
	logger        *slog.Logger
	clock         clock.Clock

	// Test hooks, set through export_test.go only.
	dequeued func(Record)              // the writer took a record off the buffer
	wrap     func(io.Writer) io.Writer // wraps each opened file for writing
}

func defaultOptions() options {
	return options{
		maxBytes:      DefaultMaxBytes,
		maxBackups:    DefaultMaxBackups,
		buffer:        DefaultBuffer,
		flushInterval: DefaultFlushInterval,
		clock:         clock.System{},
	}
}

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

// WithMaxBytes sets the size (> 0) the file may reach: when writing the next
// record would take it past n bytes the file is rotated first. Default
// DefaultMaxBytes.
func WithMaxBytes(n int64) Option {
	return optionFunc(func(o *options) { o.maxBytes = n })
}

// WithMaxBackups sets how many rotated files are kept (>= 0): path.1 is the
// newest, path.n the oldest, and the one that would become path.n+1 is
// deleted. With 0 the file is deleted and started afresh at the size bound.
// Default DefaultMaxBackups.
func WithMaxBackups(n int) Option {
	return optionFunc(func(o *options) { o.maxBackups = n })
}

// WithBuffer sets how many records (> 0) wait for the writer before Record
// drops new ones. Each waiting record takes about 250 bytes plus its
// strings. Default DefaultBuffer.
func WithBuffer(n int) Option {
	return optionFunc(func(o *options) { o.buffer = n })
}

// WithFlushInterval sets the longest a record taken by the writer waits in
// memory before it is written to the file (>= 0); the writer also writes
// whenever it has collected 64 KiB. With 0 the writer writes whenever it has
// emptied the buffer, one write per record under light load. Default
// DefaultFlushInterval. Records still in memory are lost if the process
// dies without Close.
func WithFlushInterval(d time.Duration) Option {
	return optionFunc(func(o *options) { o.flushInterval = d })
}

// WithLogger sets the logger for what an operator should see: write and
// rotation errors (when they start and when they stop) and records dropped
// (at most once per flush interval, from the writer goroutine, never from
// Record). Default: no logging.
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(o *options) { o.logger = l })
}

// WithClock sets a FileSink's clock: it stamps records whose Time is zero,
// and its ticker paces the timed flushes (WithFlushInterval), the retries
// of a held rotation and the reports of dropped records. Default
// clock.System; nil restores it.
func WithClock(clk clock.Clock) Option {
	return optionFunc(func(o *options) {
		if clk == nil {
			clk = clock.System{}
		}
		o.clock = clk
	})
}
