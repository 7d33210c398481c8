// Package sse splits a server-sent events stream into events and reads
// the token usage out of OpenAI-style event payloads, without allocating
// per event: it sits on the gateway's streaming hot path.
package sse

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// MaxEventBytes bounds one event. A longer event is an error (ErrTooLong),
// not a reason to buffer without limit.
const MaxEventBytes = 4 << 20

// ErrTooLong is returned by Next for an event over MaxEventBytes.
var ErrTooLong = errors.New("sse: event too long")

// Reader splits a stream into events. The zero value is not usable; call
// NewReader.
type Reader struct {
	br  *bufio.Reader
	buf []byte
}

// NewReader returns a Reader over r.
func NewReader(r io.Reader) *Reader {
	return &Reader{br: bufio.NewReaderSize(r, 4<<10), buf: make([]byte, 0, 1<<10)}
}

// Next returns the next event: its lines including the blank line that
// ends it, exactly as received. The slice is valid until the next call. At
// the end of the stream a final event without its blank line is returned
// with a nil error, then io.EOF. Comment-only events (": keep-alive") are
// events too.
func (r *Reader) Next() ([]byte, error) {
	r.buf = r.buf[:0]
	for {
		line, err := r.br.ReadSlice('\n')
		if len(r.buf)+len(line) > MaxEventBytes {
			return nil, ErrTooLong
		}
		r.buf = append(r.buf, line...)
		switch {
		case err == bufio.ErrBufferFull:
			continue
		case err != nil:
			if len(r.buf) > 0 && (err == io.EOF) {
				return r.buf, nil
			}
			return nil, err
		}
		if isBlank(line) {
			if len(r.buf) == len(line) {
				// A stray blank line between events: skip it.
				r.buf = r.buf[:0]
				continue
			}
			return r.buf, nil
		}
	}
}

// Buffered returns the number of bytes already read from the stream but not
// yet returned as events. A relay can flush its client only when it is zero:
// events that arrived together are then sent together, with no added delay.
func (r *Reader) Buffered() int { return r.br.Buffered() }

func isBlank(line []byte) bool {
	return len(line) == 1 || (len(line) == 2 && line[0] == '\r')
}

// Data returns the payload of the event's first "data:" field, without
// the field name, the optional space and the line ending, or nil when the
// event has none. OpenAI-style streams put one JSON document per event on
// one data line.
func Data(event []byte) []byte {
	for len(event) > 0 {
		line := event
		if i := bytes.IndexByte(event, '\n'); i >= 0 {
			line, event = event[:i], event[i+1:]
		} else {
			event = nil
		}
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if rest, ok := bytes.CutPrefix(line, []byte("data:")); ok {
			return bytes.TrimPrefix(rest, []byte{' '})
		}
	}
	return nil
}

// EventName returns the value of the event's "event:" field, or nil.
func EventName(event []byte) []byte {
	for len(event) > 0 {
		line := event
		if i := bytes.IndexByte(event, '\n'); i >= 0 {
			line, event = event[:i], event[i+1:]
		} else {
			event = nil
		}
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if rest, ok := bytes.CutPrefix(line, []byte("event:")); ok {
			return bytes.TrimPrefix(rest, []byte{' '})
		}
	}
	return nil
}

// IsDone reports whether data is the "[DONE]" sentinel.
func IsDone(data []byte) bool { return string(bytes.TrimSpace(data)) == "[DONE]" }
