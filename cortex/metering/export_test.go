package metering

import "io"

// WithDequeueHook makes the writer goroutine call f with every record it
// takes off the buffer, before it encodes it. f may block to hold the
// writer.
func WithDequeueHook(f func(Record)) Option {
	return optionFunc(func(o *options) { o.dequeued = f })
}

// WithWriterWrap makes the writer write each file it opens through
// wrap(file), to inject write errors.
func WithWriterWrap(wrap func(io.Writer) io.Writer) Option {
	return optionFunc(func(o *options) { o.wrap = wrap })
}
