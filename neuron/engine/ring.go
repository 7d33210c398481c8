package engine

import (
	"bufio"
	"io"
	"strings"
	"sync"
)

// maxLineBytes bounds one stored line; the rest of a longer line is dropped.
const maxLineBytes = 4 << 10

// ring keeps the last lines written by an engine. It is safe for
// concurrent use.
type ring struct {
	mu    sync.Mutex
	lines []string // circular once full
	next  int      // where the next line goes once full
	full  bool
	total int // lines ever added
}

func newRing(n int) *ring { return &ring{lines: make([]string, 0, n)} }

func (r *ring) add(line string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.total++
	if !r.full {
		r.lines = append(r.lines, line)
		r.full = len(r.lines) == cap(r.lines)
		return
	}
	r.lines[r.next] = line
	r.next = (r.next + 1) % len(r.lines)
}

// last returns up to n of the newest lines, oldest first; n <= 0 means all.
func (r *ring) last(n int) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lastLocked(n)
}

func (r *ring) lastLocked(n int) []string {
	if n <= 0 || n > len(r.lines) {
		n = len(r.lines)
	}
	all := make([]string, 0, len(r.lines))
	all = append(all, r.lines[r.next:]...)
	all = append(all, r.lines[:r.next]...)
	return all[len(all)-n:]
}

// mark returns a position to pass to since.
func (r *ring) mark() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.total
}

// since returns up to n of the newest lines added after mark that are still
// kept, oldest first.
func (r *ring) since(mark, n int) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := r.total - mark
	if k <= 0 {
		return nil
	}
	if n > 0 && n < k {
		k = n
	}
	return r.lastLocked(k)
}

// readFrom adds every line of rd until it fails or ends. A trailing "\r" is
// dropped; a line longer than maxLineBytes is cut.
func (r *ring) readFrom(rd io.Reader) {
	br := bufio.NewReaderSize(rd, maxLineBytes)
	var b strings.Builder
	for {
		chunk, isPrefix, err := br.ReadLine()
		if room := maxLineBytes - b.Len(); room > 0 {
			b.Write(chunk[:min(len(chunk), room)])
		}
		if err != nil {
			if b.Len() > 0 {
				r.add(b.String())
			}
			return
		}
		if !isPrefix {
			r.add(strings.TrimSuffix(b.String(), "\r"))
			b.Reset()
		}
	}
}
