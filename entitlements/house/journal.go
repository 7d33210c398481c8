package house

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/helexa-ai/helexa-go/entitlements"
)

// journalCompactBytes is the size past which a flush rewrites the journal
// as what it still has to report.
const journalCompactBytes = 1 << 20

// journal is the append-only file of GrantConfig.Journal: every settle
// inside a grant is in it, on disk, before Settle returns, and every
// report of the spend is in it before it is sent and once the house
// answered, so that a gateway restarted after a crash reports what the
// crashed one had not.
//
// Records are JSON lines: a grant ("g", with its principal), a settle
// inside it ("s", the amount), a report sent ("r", the whole request, so
// that it is sent again with its idempotency id) and a report answered
// ("a", by idempotency id). What a grant still has to report is its
// settles less the spend of its reports.
//
// Writes are batched: a settle appends its record to a buffer and waits
// until a sync covers it; one waiter at a time writes the buffer and
// fsyncs, for every record appended by then (group commit).
type journal struct {
	path      string
	compactAt int64 // the size past which a flush compacts (journalCompactBytes)

	mu      sync.Mutex
	cond    *sync.Cond
	f       *os.File
	size    int64
	buf     []byte // appended, not yet written
	seq     uint64 // records appended
	synced  uint64 // records written and fsynced
	syncing bool
	err     error // a failed write: the journal no longer promises anything
}

// journalRecord is one line of the journal.
type journalRecord struct {
	Grant     string              `json:"g,omitempty"`
	Principal *principalJSON      `json:"p,omitempty"`
	Settle    int64               `json:"s,omitempty"`
	Report    *grantReportRequest `json:"r,omitempty"`
	Answered  string              `json:"a,omitempty"`
}

// leftover is what a journal says a grant still has to report.
type leftover struct {
	p       entitlements.Principal
	spent   entitlements.Amount // settled and not covered by an answered report
	pending *grantReportRequest // sent, never answered
}

// openJournal opens (creating) the journal at path and returns what its
// grants still have to report, by grant id.
func openJournal(path string) (*journal, map[string]*leftover, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, nil, fmt.Errorf("house: grant journal: %w", err)
	}
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("house: grant journal: %w", err)
	}
	left, err := replay(data)
	if err != nil {
		return nil, nil, fmt.Errorf("house: grant journal %s: %w", path, err)
	}
	j := &journal{path: path, compactAt: journalCompactBytes}
	j.cond = sync.NewCond(&j.mu)
	// Start from a compact file of the leftovers only.
	j.mu.Lock()
	err = j.rewrite(snapshotRecords(left))
	j.mu.Unlock()
	if err != nil {
		return nil, nil, err
	}
	return j, left, nil
}

// replay reads a journal's records. A torn last line (a crash during a
// write) is dropped: no settle it held had returned.
func replay(data []byte) (map[string]*leftover, error) {
	left := map[string]*leftover{}
	sent := map[string]*grantReportRequest{} // by idempotency id, until answered
	lines := bytes.Split(data, []byte("\n"))
	lines = lines[:len(lines)-1] // "" after the last newline, or the torn line
	for _, line := range lines {
		var r journalRecord
		if err := json.Unmarshal(line, &r); err != nil {
			return nil, err
		}
		switch {
		case r.Report != nil:
			sent[r.Report.IdempotencyID] = r.Report
			if l := left[r.Report.GrantID]; l != nil {
				l.pending = r.Report
			}
		case r.Answered != "":
			if rep := sent[r.Answered]; rep != nil {
				delete(sent, r.Answered)
				if l := left[rep.GrantID]; l != nil {
					l.spent -= entitlements.Amount(rep.Spent)
					l.pending = nil
				}
			}
		case r.Principal != nil:
			p, err := r.Principal.principal()
			if err != nil {
				return nil, err
			}
			if left[r.Grant] == nil {
				left[r.Grant] = &leftover{p: p}
			}
		case r.Grant != "":
			if l := left[r.Grant]; l != nil {
				l.spent += entitlements.Amount(r.Settle)
			}
		}
	}
	for id, l := range left {
		if l.spent <= 0 && l.pending == nil {
			delete(left, id)
		}
	}
	return left, nil
}

// snapshotRecords are the records of leftovers, for a compact journal.
func snapshotRecords(left map[string]*leftover) []journalRecord {
	var out []journalRecord
	for id, l := range left {
		p := principalToWire(l.p)
		out = append(out, journalRecord{Grant: id, Principal: &p})
		if l.spent > 0 {
			out = append(out, journalRecord{Grant: id, Settle: int64(l.spent)})
		}
		if l.pending != nil {
			out = append(out, journalRecord{Report: l.pending})
		}
	}
	return out
}

// rewrite replaces the file with records, durably (a new file renamed
// over the old), and makes every record appended so far synced: the
// caller's records stand for them. j.mu is held, and the caller keeps
// appends out (see grantClient.compact).
func (j *journal) rewrite(records []journalRecord) error {
	for j.syncing {
		j.cond.Wait()
	}
	var b []byte
	for _, r := range records {
		b = appendRecord(b, r)
	}
	tmp := j.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err == nil {
		_, err = f.Write(b)
		if err == nil {
			err = f.Sync()
		}
		if err == nil {
			err = os.Rename(tmp, j.path)
		}
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}
	if err == nil {
		err = syncDir(filepath.Dir(j.path))
	}
	if err != nil {
		return fmt.Errorf("house: grant journal: %w", err)
	}
	if j.f != nil {
		_ = j.f.Close()
	}
	j.f, j.size, j.buf, j.synced = f, int64(len(b)), nil, j.seq
	j.cond.Broadcast()
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func appendRecord(b []byte, r journalRecord) []byte {
	line, _ := json.Marshal(r) // of plain fields: cannot fail
	return append(append(b, line...), '\n')
}

// append adds r to the buffer and returns its sequence number, for sync.
func (j *journal) append(r journalRecord) uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.buf = appendRecord(j.buf, r)
	j.seq++
	return j.seq
}

// sync returns once record seq is on disk.
func (j *journal) sync(seq uint64) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	for j.synced < seq {
		if j.err != nil {
			return j.err
		}
		if j.syncing {
			j.cond.Wait()
			continue
		}
		j.syncing = true
		buf, upto, f := j.buf, j.seq, j.f
		j.buf = nil
		j.mu.Unlock()
		_, err := f.Write(buf)
		if err == nil {
			err = f.Sync()
		}
		j.mu.Lock()
		j.syncing = false
		if err != nil {
			j.err = fmt.Errorf("house: grant journal: %w", err)
		} else if f == j.f { // else a rewrite covered them
			j.synced, j.size = max(j.synced, upto), j.size+int64(len(buf))
		}
		j.cond.Broadcast()
	}
	return nil
}

// close closes the file: emptied when empty (everything was reported),
// else with what is still buffered written out.
func (j *journal) close(empty bool) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	for j.syncing {
		j.cond.Wait()
	}
	var err error
	switch {
	case j.err != nil:
	case empty:
		err = j.f.Truncate(0)
	case len(j.buf) > 0:
		_, err = j.f.Write(j.buf)
	}
	if err == nil && j.err == nil {
		err = j.f.Sync()
	}
	j.buf, j.synced, j.err = nil, j.seq, errors.New("house: grant journal: closed")
	return errors.Join(err, j.f.Close())
}
