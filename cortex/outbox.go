package cortex

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/helexa-ai/helexa-go/cortex/metering"
)

// outboxCompactBytes is the size past which the outbox file is rewritten
// with only its open entries.
const outboxCompactBytes = 4 << 20

// Outbox line operations.
const (
	opSettle  = "settle"  // a settle (or release) is about to be attempted
	opPending = "pending" // its first attempt failed: the request's record says pending
	opDone    = "done"    // it ended: landed, or given up for good
)

// outboxLine is one line of the settle outbox file: JSON, one object per
// line. A settle line carries what is needed to re-issue the settle after
// a restart (the provider's reservation token and the principal) and to
// write the meter's settle record; pending and done lines carry the id,
// and a done line the settle's final state.
type outboxLine struct {
	Op   string    `json:"op"`
	ID   string    `json:"id"`
	Time time.Time `json:"time,omitzero"` // settle: when the request ended (the retry window counts from it)

	Token    string `json:"token,omitempty"`
	Release  bool   `json:"release,omitempty"`
	Amount   int64  `json:"amount,omitempty"`
	Account  string `json:"account_id,omitempty"`
	KeyID    string `json:"key_id,omitempty"`
	Unit     string `json:"unit,omitempty"`
	Reserved int64  `json:"reserved,omitempty"`
	Model    string `json:"model,omitempty"`
	Neuron   string `json:"neuron,omitempty"`
	Route    string `json:"route,omitempty"`
	Stream   bool   `json:"stream,omitempty"`
	Status   int    `json:"status,omitempty"`
	Outcome  string `json:"outcome,omitempty"`

	State metering.SettleState `json:"state,omitempty"` // done
}

// outboxEntry is a settle the outbox holds open: its settle line, and
// whether its pending line was written.
type outboxEntry struct {
	line    outboxLine
	pending bool
}

// outbox is the settle outbox (WithSettleOutbox): an append-only file of
// the settles the gateway has begun and not finished. A settle line is
// written before the first attempt, a pending line (with fsync) when that
// attempt fails, and a done line when the settle lands or is given up; on
// start the open entries are read back and re-issued. The file is
// rewritten with only its open entries at start and whenever it grows past
// outboxCompactBytes.
//
// The mutex guards the file and is held only for the writes (and the
// rare rewrite): a lock of the outbox's own that nothing else waits on.
type outbox struct {
	path string

	mu     sync.Mutex
	f      *os.File
	size   int64
	broken bool              // a write failed: the file may end in a partial line
	open   map[string][]byte // id -> its settle line (and pending line), for rewrites
	closed bool
}

// errOutboxClosed is returned by writes after close.
var errOutboxClosed = errors.New("cortex: settle outbox closed")

// openOutbox opens (creating it when missing) the outbox at path and
// returns the entries it holds open, in the order they were written, and
// the number of lines it could not read (a line cut short by a crash). It
// rewrites the file with only the open entries.
func openOutbox(path string) (*outbox, []outboxEntry, int, error) {
	entries, bad, err := readOutbox(path)
	if err != nil {
		return nil, nil, 0, err
	}
	o := &outbox{path: path, open: make(map[string][]byte, len(entries))}
	for _, e := range entries {
		b, err := e.encode()
		if err != nil {
			return nil, nil, 0, err
		}
		o.open[e.line.ID] = b
	}
	if err := o.rewrite(); err != nil {
		return nil, nil, 0, err
	}
	return o, entries, bad, nil
}

// readOutbox reads the open entries of the file at path; a missing file
// holds none.
func readOutbox(path string) ([]outboxEntry, int, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("cortex: settle outbox: %w", err)
	}
	defer f.Close()
	var (
		order []string
		byID  = make(map[string]*outboxEntry)
		bad   int
	)
	r := bufio.NewReader(f)
	for {
		b, err := r.ReadBytes('\n')
		if len(bytes.TrimSpace(b)) > 0 {
			var l outboxLine
			if jerr := json.Unmarshal(b, &l); jerr != nil || l.ID == "" {
				bad++
			} else {
				switch l.Op {
				case opSettle:
					// A later settle line of an id takes the place of its
					// earlier one: the request's settle, of the intent
					// written when it reserved (settler.intent).
					if e := byID[l.ID]; e != nil {
						e.line = l
					} else {
						order = append(order, l.ID)
						byID[l.ID] = &outboxEntry{line: l}
					}
				case opPending:
					if e := byID[l.ID]; e != nil {
						e.pending = true
					}
				case opDone:
					delete(byID, l.ID)
				default:
					bad++
				}
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, 0, fmt.Errorf("cortex: settle outbox: %w", err)
		}
	}
	var out []outboxEntry
	for _, id := range order {
		if e := byID[id]; e != nil {
			out = append(out, *e)
		}
	}
	return out, bad, nil
}

// encode returns the lines of an open entry, as a rewrite writes them.
func (e outboxEntry) encode() ([]byte, error) {
	b, err := marshalLine(e.line)
	if err != nil || !e.pending {
		return b, err
	}
	p, err := marshalLine(outboxLine{Op: opPending, ID: e.line.ID})
	return append(b, p...), err
}

func marshalLine(l outboxLine) ([]byte, error) {
	b, err := json.Marshal(l)
	if err != nil {
		return nil, fmt.Errorf("cortex: settle outbox: %w", err)
	}
	return append(b, '\n'), nil
}

// add writes the settle line of a settle about to be attempted. It does
// not fsync: the write survives a crash of the process, and a pending
// line, fsynced, follows when the first attempt fails.
func (o *outbox) add(l outboxLine) error {
	b, err := marshalLine(l)
	if err != nil {
		return err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.writeLocked(b); err != nil {
		return err
	}
	o.open[l.ID] = b
	return nil
}

// pending writes the pending line of id and syncs the file, so that the
// settle survives a crash of the machine too.
func (o *outbox) pending(id string) error {
	b, err := marshalLine(outboxLine{Op: opPending, ID: id})
	if err != nil {
		return err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.writeLocked(b); err != nil {
		return err
	}
	if prev, ok := o.open[id]; ok {
		o.open[id] = append(prev, b...)
	}
	if err := o.f.Sync(); err != nil {
		return fmt.Errorf("cortex: settle outbox: %w", err)
	}
	return nil
}

// done writes the done line of id, which ended in state, and rewrites the
// file when it has grown past its bound. It does nothing for an id that
// is not open.
func (o *outbox) done(id string, state metering.SettleState) error {
	b, err := marshalLine(outboxLine{Op: opDone, ID: id, State: state})
	if err != nil {
		return err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, ok := o.open[id]; !ok {
		return nil
	}
	delete(o.open, id)
	if err := o.writeLocked(b); err != nil {
		return err
	}
	if o.size > outboxCompactBytes {
		return o.rewriteLocked()
	}
	return nil
}

// writeLocked appends b, terminating a line a failed write left partial.
func (o *outbox) writeLocked(b []byte) error {
	if o.closed {
		return errOutboxClosed
	}
	if o.broken {
		b = append([]byte{'\n'}, b...)
	}
	n, err := o.f.Write(b)
	o.size += int64(n)
	if err != nil {
		o.broken = true
		return fmt.Errorf("cortex: settle outbox: %w", err)
	}
	o.broken = false
	return nil
}

// rewrite replaces the file with one holding only the open entries,
// fsynced, and opens it for appending.
func (o *outbox) rewrite() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.rewriteLocked()
}

func (o *outbox) rewriteLocked() error {
	tmp := o.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("cortex: settle outbox: %w", err)
	}
	var size int64
	w := bufio.NewWriter(f)
	for _, b := range o.open {
		n, _ := w.Write(b)
		size += int64(n)
	}
	err = errors.Join(w.Flush(), f.Sync(), f.Close())
	if err == nil {
		err = os.Rename(tmp, o.path)
	}
	if err == nil {
		err = syncDir(filepath.Dir(o.path))
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("cortex: settle outbox: rewriting: %w", err)
	}
	nf, err := os.OpenFile(o.path, os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("cortex: settle outbox: %w", err)
	}
	if o.f != nil {
		_ = o.f.Close()
	}
	o.f, o.size, o.broken = nf, size, false
	return nil
}

// syncDir fsyncs a directory, so that a rename in it is durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// openCount returns the number of open entries.
func (o *outbox) openCount() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.open)
}

// close rewrites the file with only its open entries and closes it;
// later writes fail.
func (o *outbox) close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return nil
	}
	o.closed = true
	err := o.rewriteLocked()
	err = errors.Join(err, o.f.Close())
	if err != nil {
		return fmt.Errorf("cortex: settle outbox: %w", err)
	}
	return nil
}
