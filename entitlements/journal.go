package entitlements

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The ledger file of a durable Local (OpenLocal).
//
// It starts with the 8 bytes journalMagic, then holds records, each framed
// as
//
//	length  uint32, little endian: the payload's length (>= 1)
//	crc     uint32, little endian: CRC-32C (Castagnoli) of the payload
//	payload length bytes; the first is the record kind
//
// Kinds:
//
//	'a' account: JSON accountRecord, the whole state of an account
//	'k' key:     JSON keyRecord, the whole state of a key
//	'c' cap:     JSON capRecord, an account's new cap
//	's' spend:   binary: uvarint len(id), id, varint window index, varint amount
//
// Replaying the records in order gives the ledger's state: an account's
// spent, the window it counts in, its cap, and its keys. A compaction
// rewrites the file as the 'a' and 'k' records of the current state (to a
// temporary file, synced, renamed over the old one), when what was
// appended since the last compaction outgrows it.
//
// A torn last record (a crash in the middle of a write: its length runs
// past the end of the file, or its CRC fails and nothing follows, or only
// zeros follow) is dropped and the file truncated before it. A bad record
// followed by good data is corruption, which OpenLocal refuses.

const journalMagic = "HLXLDG1\n"

// Record kinds.
const (
	recAccount byte = 'a'
	recKey     byte = 'k'
	recCap     byte = 'c'
	recSpend   byte = 's'
)

// maxRecord bounds a record's payload; a longer length is a torn or
// corrupt frame.
const maxRecord = 1 << 20

// DefaultSyncInterval is how long a settled spend waits at most before
// the ledger file of a durable Local is written and synced: 10ms. See
// LocalConfig.SyncInterval.
const DefaultSyncInterval = 10 * time.Millisecond

const maxSyncInterval = time.Minute

// minCompactBytes is the least a ledger file grows by before a compaction.
const minCompactBytes = 4 << 20

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// ErrLedgerLocked: another process holds the ledger file (a running
// cortex, while "cortex keys" tries to open it).
var ErrLedgerLocked = errors.New("entitlements: the ledger file is in use by another process")

// ErrLedgerCorrupt: the ledger file holds a bad record followed by good
// data, or is not a ledger file; OpenLocal refuses it rather than guess.
var ErrLedgerCorrupt = errors.New("entitlements: the ledger file is corrupt")

// errClosed is the journal's error after Close.
var errClosed = errors.New("entitlements: the ledger is closed")

// ledgerState is what a ledger file replays to.
type ledgerState struct {
	accounts map[string]*stateAccount
	keys     map[[sha256.Size]byte]KeyInfo
}

type stateAccount struct {
	unit   Unit
	window CapWindow
	cap    *Amount
	spent  Amount
	win    int64 // window index of spent; math.MinInt64 before any
}

func newLedgerState() *ledgerState {
	return &ledgerState{accounts: make(map[string]*stateAccount), keys: make(map[[sha256.Size]byte]KeyInfo)}
}

// spend applies a spend record.
func (s *ledgerState) spend(id string, win int64, amount Amount) error {
	a := s.accounts[id]
	if a == nil {
		return fmt.Errorf("spend for unknown account %q", id)
	}
	if a.window.Kind == WindowRolling {
		switch {
		case win > a.win:
			a.win, a.spent = win, 0
		case win < a.win:
			return nil // a past window
		}
	}
	a.spent = satAdd(a.spent, amount)
	return nil
}

func satAdd(a, b Amount) Amount {
	if b > math.MaxInt64-a {
		return math.MaxInt64
	}
	return a + b
}

// accountRecord is the JSON payload of an 'a' record.
type accountRecord struct {
	ID      string  `json:"id"`
	Unit    string  `json:"unit"`
	Window  string  `json:"window"`
	Seconds int64   `json:"seconds,omitempty"`
	Cap     *Amount `json:"cap"`
	Spent   Amount  `json:"spent"`
	Win     int64   `json:"win"`
}

// keyRecord is the JSON payload of a 'k' record. Times are Unix
// milliseconds; revoked is 0 while the key is active.
type keyRecord struct {
	Digest      string `json:"digest"`
	Account     string `json:"account"`
	KeyID       string `json:"key_id"`
	Unit        string `json:"unit"`
	Clamp       bool   `json:"clamp,omitempty"`
	MaxInFlight int    `json:"max_in_flight,omitempty"`
	RPM         int    `json:"rpm,omitempty"`
	Models      string `json:"models,omitempty"` // ModelAllowList.String
	Created     int64  `json:"created"`
	Revoked     int64  `json:"revoked,omitempty"`
}

// capRecord is the JSON payload of a 'c' record; Cap nil removes the cap.
type capRecord struct {
	ID  string  `json:"id"`
	Cap *Amount `json:"cap"`
}

func parseUnit(s string) (Unit, bool) {
	switch s {
	case "tokens":
		return UnitTokens, true
	case "usd":
		return UnitMicroUSD, true
	}
	return 0, false
}

func accountRec(id string, a *stateAccount) accountRecord {
	r := accountRecord{ID: id, Unit: a.unit.String(), Window: a.window.Kind.String(), Seconds: a.window.Seconds, Spent: a.spent, Win: a.win}
	if a.cap != nil {
		r.Cap = Cap(*a.cap)
	}
	return r
}

func keyRec(k KeyInfo) keyRecord {
	r := keyRecord{
		Digest: hex.EncodeToString(k.Digest[:]), Account: k.Principal.AccountID, KeyID: k.Principal.KeyID,
		Unit: k.Principal.Unit.String(), Clamp: k.Principal.Limits.ClampMaxTokens,
		MaxInFlight: k.Principal.Limits.MaxInFlight, RPM: k.Principal.Limits.RPM,
		Models:  k.Principal.Limits.Models.String(),
		Created: k.CreatedAt.UnixMilli(),
	}
	if k.Revoked() {
		r.Revoked = k.RevokedAt.UnixMilli()
	}
	return r
}

// apply applies one record's payload to s.
func (s *ledgerState) apply(p []byte) error {
	body := p[1:]
	switch p[0] {
	case recSpend:
		n, k := binary.Uvarint(body)
		if k <= 0 || n > uint64(len(body)-k) {
			return errors.New("bad spend record")
		}
		id := string(body[k : k+int(n)])
		rest := body[k+int(n):]
		win, k1 := binary.Varint(rest)
		if k1 <= 0 {
			return errors.New("bad spend record")
		}
		amt, k2 := binary.Varint(rest[k1:])
		if k2 <= 0 || k1+k2 != len(rest) || amt < 0 {
			return errors.New("bad spend record")
		}
		return s.spend(id, win, Amount(amt))
	case recAccount:
		var r accountRecord
		if err := json.Unmarshal(body, &r); err != nil {
			return err
		}
		u, ok := parseUnit(r.Unit)
		if !ok || r.ID == "" {
			return errors.New("bad account record")
		}
		a := &stateAccount{unit: u, cap: r.Cap, spent: r.Spent, win: r.Win}
		switch r.Window {
		case "balance":
			a.window = Balance()
		case "rolling":
			a.window = Rolling(r.Seconds)
		default:
			return errors.New("bad account record window")
		}
		if msg := a.window.validate(); msg != "" {
			return errors.New("bad account record: " + msg)
		}
		s.accounts[r.ID] = a
		return nil
	case recCap:
		var r capRecord
		if err := json.Unmarshal(body, &r); err != nil {
			return err
		}
		a := s.accounts[r.ID]
		if a == nil {
			return fmt.Errorf("cap for unknown account %q", r.ID)
		}
		a.cap = r.Cap
		return nil
	case recKey:
		var r keyRecord
		if err := json.Unmarshal(body, &r); err != nil {
			return err
		}
		d, err := ParseDigest(r.Digest)
		if err != nil {
			return err
		}
		u, ok := parseUnit(r.Unit)
		if !ok || r.Account == "" {
			return errors.New("bad key record")
		}
		models, err := ParseModelAllowList(r.Models)
		if err != nil {
			return fmt.Errorf("bad key record: %w", err)
		}
		k := KeyInfo{Digest: d, CreatedAt: time.UnixMilli(r.Created).UTC(), Principal: Principal{
			AccountID: r.Account, KeyID: r.KeyID, Unit: u,
			Limits: Limits{ClampMaxTokens: r.Clamp, MaxInFlight: r.MaxInFlight, RPM: r.RPM, Models: models},
		}}
		if r.Revoked != 0 {
			k.RevokedAt = time.UnixMilli(r.Revoked).UTC()
		}
		s.keys[d] = k
		return nil
	}
	return fmt.Errorf("unknown record kind %q", p[0])
}

// appendFrame appends the frame of payload p to buf.
func appendFrame(buf, p []byte) []byte {
	buf = binary.LittleEndian.AppendUint32(buf, uint32(len(p)))
	buf = binary.LittleEndian.AppendUint32(buf, crc32.Checksum(p, crcTable))
	return append(buf, p...)
}

// appendJSONFrame appends a record of kind holding v as JSON.
func appendJSONFrame(buf []byte, kind byte, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("entitlements: encoding a ledger record: " + err.Error()) // plain structs: cannot fail
	}
	return appendFrame(buf, append([]byte{kind}, b...))
}

// encode returns the file a compaction writes: the magic, then every
// account and key, sorted so that equal states give equal files.
func (s *ledgerState) encode() []byte {
	buf := []byte(journalMagic)
	ids := make([]string, 0, len(s.accounts))
	for id := range s.accounts {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		buf = appendJSONFrame(buf, recAccount, accountRec(id, s.accounts[id]))
	}
	keys := make([]KeyInfo, 0, len(s.keys))
	for _, k := range s.keys {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return bytes.Compare(keys[i].Digest[:], keys[j].Digest[:]) < 0 })
	for _, k := range keys {
		buf = appendJSONFrame(buf, recKey, keyRec(k))
	}
	return buf
}

// replay reads a ledger file's content. It returns the state, the length
// of the good prefix (the file is truncated there when shorter than data)
// and an error wrapping ErrLedgerCorrupt.
func replay(data []byte) (*ledgerState, int, error) {
	s := newLedgerState()
	if len(data) == 0 {
		return s, 0, nil
	}
	if len(data) < len(journalMagic) {
		if bytes.HasPrefix([]byte(journalMagic), data) {
			return s, 0, nil // a torn header: a new file
		}
		return nil, 0, fmt.Errorf("%w: not a ledger file", ErrLedgerCorrupt)
	}
	if string(data[:len(journalMagic)]) != journalMagic {
		return nil, 0, fmt.Errorf("%w: not a ledger file", ErrLedgerCorrupt)
	}
	off := len(journalMagic)
	for off < len(data) {
		rest := data[off:]
		bad := ""
		var p []byte
		if len(rest) < 8 {
			bad = "short frame"
		} else {
			n := binary.LittleEndian.Uint32(rest)
			switch {
			case n == 0 || n > maxRecord:
				bad = "bad length"
			case uint64(n) > uint64(len(rest)-8):
				bad = "runs past the end"
			default:
				p = rest[8 : 8+n]
				if crc32.Checksum(p, crcTable) != binary.LittleEndian.Uint32(rest[4:]) {
					bad = "bad checksum"
					if 8+int(n) < len(rest) {
						return nil, 0, fmt.Errorf("%w: record at byte %d: %s, and records follow", ErrLedgerCorrupt, off, bad)
					}
				}
			}
		}
		if bad != "" {
			if bad == "bad length" && !allZero(rest) {
				return nil, 0, fmt.Errorf("%w: record at byte %d: %s", ErrLedgerCorrupt, off, bad)
			}
			return s, off, nil // a torn tail
		}
		if err := s.apply(p); err != nil {
			return nil, 0, fmt.Errorf("%w: record at byte %d: %v", ErrLedgerCorrupt, off, err)
		}
		off += 8 + len(p)
	}
	return s, off, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// journal is the ledger file of a durable Local: a state (what the file
// plus the pending records replay to), records not yet written, and one
// goroutine (run) that writes, syncs and compacts.
type journal struct {
	path     string
	interval time.Duration
	compact  int64 // least growth before a compaction
	log      *slog.Logger
	lock     *os.File

	kick, urgent, stop chan struct{}
	done               chan struct{}

	mu       sync.Mutex
	state    *ledgerState
	buf      []byte                // records not yet written
	spare    []byte                // the other buffer
	waiters  []chan error          // Sync calls waiting for the next write
	grown    int64                 // bytes appended since the last compaction
	base     int64                 // size of the file at the last compaction
	rewrite  bool                  // the next write is a compaction (after a failed write)
	err      error                 // the last write's error; errClosed after Close
	ferr     atomic.Pointer[error] // err, read without j.mu
	closed   bool
	closeErr error

	f *os.File // the file, appended to; owned by run
}

// openJournal locks and reads the ledger file at path, truncating a torn
// tail, and starts its writer.
func openJournal(path string, interval time.Duration, compact int64, log *slog.Logger) (*journal, error) {
	lock, err := lockFile(path + ".lock")
	if err != nil {
		return nil, err
	}
	j := &journal{
		path: path, interval: interval, compact: compact, log: log, lock: lock,
		kick: make(chan struct{}, 1), urgent: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
	}
	if err := j.open(); err != nil {
		_ = unlockFile(lock)
		return nil, err
	}
	go j.run()
	return j, nil
}

func (j *journal) open() error {
	data, err := os.ReadFile(j.path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	state, good, err := replay(data)
	if err != nil {
		return fmt.Errorf("%s: %w", j.path, err)
	}
	j.state = state
	if good < len(journalMagic) {
		// New (or a torn header): write a fresh file.
		if err := j.replace([]byte(journalMagic)); err != nil {
			return err
		}
		j.base = int64(len(journalMagic))
		return nil
	}
	f, err := os.OpenFile(j.path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if good < len(data) {
		j.log.Warn("entitlements: dropped a torn record at the end of the ledger file (a crash during a write)",
			"path", j.path, "offset", good, "bytes", len(data)-good)
		if err := f.Truncate(int64(good)); err != nil {
			return errors.Join(err, f.Close())
		}
		if err := f.Sync(); err != nil {
			return errors.Join(err, f.Close())
		}
	}
	if _, err := f.Seek(int64(good), io.SeekStart); err != nil {
		return errors.Join(err, f.Close())
	}
	j.f = f
	j.base = int64(good)
	return nil
}

// replace writes data as the whole file: to a temporary file, synced, then
// renamed over the path, the directory synced, and reopened for appending.
func (j *journal) replace(data []byte) error {
	tmp := j.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return errors.Join(err, f.Close())
	}
	if err := f.Sync(); err != nil {
		return errors.Join(err, f.Close())
	}
	if err := os.Rename(tmp, j.path); err != nil {
		return errors.Join(err, f.Close())
	}
	if d, err := os.Open(filepath.Dir(j.path)); err == nil {
		_ = d.Sync() // best effort: not every system syncs a directory
		_ = d.Close()
	}
	if j.f != nil {
		_ = j.f.Close()
	}
	j.f = f
	return nil
}

// addLocked appends a record and wakes the writer. j.mu must be held.
func (j *journal) addLocked(frame []byte) {
	j.buf = append(j.buf, frame...)
	j.grown += int64(len(frame))
	select {
	case j.kick <- struct{}{}:
	default:
	}
}

// spend records a settled amount of an account, counted in window win.
func (j *journal) spend(id string, win int64, amount Amount) {
	var p [1 + binary.MaxVarintLen64*3 + 64]byte
	b := append(p[:0], recSpend)
	b = binary.AppendUvarint(b, uint64(len(id)))
	b = append(b, id...)
	b = binary.AppendVarint(b, win)
	b = binary.AppendVarint(b, int64(amount))
	j.mu.Lock()
	defer j.mu.Unlock()
	_ = j.state.spend(id, win, amount) // the account is in the state: Local added it first
	j.buf = binary.LittleEndian.AppendUint32(j.buf, uint32(len(b)))
	j.buf = binary.LittleEndian.AppendUint32(j.buf, crc32.Checksum(b, crcTable))
	j.buf = append(j.buf, b...)
	j.grown += int64(8 + len(b))
	select {
	case j.kick <- struct{}{}:
	default:
	}
}

// account records an account's whole state.
func (j *journal) account(id string, a stateAccount) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.state.accounts[id] = &a
	j.addLocked(appendJSONFrame(nil, recAccount, accountRec(id, &a)))
}

// setCap records an account's new cap (nil: uncapped).
func (j *journal) setCap(id string, c *Amount) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if a := j.state.accounts[id]; a != nil {
		a.cap = c
	}
	j.addLocked(appendJSONFrame(nil, recCap, capRecord{ID: id, Cap: c}))
}

// key records a key's whole state.
func (j *journal) key(k KeyInfo) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.state.keys[k.Digest] = k
	j.addLocked(appendJSONFrame(nil, recKey, keyRec(k)))
}

// failed returns the error of the last write (errClosed after Close), nil
// when it succeeded.
func (j *journal) failed() error {
	if p := j.ferr.Load(); p != nil {
		return *p
	}
	return nil
}

// setErr sets j.err. j.mu must be held.
func (j *journal) setErr(err error) {
	j.err = err
	if err == nil {
		j.ferr.Store(nil)
	} else {
		j.ferr.Store(&err)
	}
}

// sync asks the writer to write and sync now and returns a channel that
// delivers the outcome.
func (j *journal) sync() <-chan error {
	ch := make(chan error, 1)
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		ch <- errClosed
		return ch
	}
	j.waiters = append(j.waiters, ch)
	j.mu.Unlock()
	select {
	case j.urgent <- struct{}{}:
	default:
	}
	return ch
}

// close writes what is pending, stops the writer and releases the file.
func (j *journal) close() error {
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		<-j.done
		return j.closeErr
	}
	j.closed = true
	j.mu.Unlock()
	close(j.stop)
	<-j.done
	j.mu.Lock()
	werr := j.err
	j.setErr(errClosed)
	j.mu.Unlock()
	errs := []error{werr}
	if j.f != nil {
		errs = append(errs, j.f.Close())
	}
	errs = append(errs, unlockFile(j.lock))
	j.closeErr = errors.Join(errs...)
	return j.closeErr
}

// run is the writer: it writes and syncs what is pending when woken,
// then rests for the sync interval, so that records wait at most about
// one interval plus one write.
func (j *journal) run() {
	defer close(j.done)
	var retry <-chan time.Time
	for {
		select {
		case <-j.kick:
		case <-j.urgent:
		case <-j.stop:
		case <-retry:
		}
		retry = nil
		pending := j.flush()
		select {
		case <-j.stop:
			// Close: write what came in during the last write, once more
			// after a failure, then stop.
			if j.flush() {
				j.flush()
			}
			return
		default:
		}
		if pending {
			retry = time.After(max(j.interval, 100*time.Millisecond))
			continue
		}
		if j.interval > 0 {
			t := time.NewTimer(j.interval)
			select {
			case <-t.C:
			case <-j.urgent:
				// A Sync: write now.
				select {
				case j.urgent <- struct{}{}:
				default:
				}
			case <-j.stop:
			}
			t.Stop()
		}
	}
}

// flush writes and syncs the pending records (or compacts the file) and
// answers the Sync calls waiting. It reports whether a failed write left
// records pending.
func (j *journal) flush() (pending bool) {
	j.mu.Lock()
	buf := j.buf
	j.buf = j.spare[:0]
	waiters := j.waiters
	j.waiters = nil
	compact := j.rewrite || (j.grown >= j.compact && j.grown >= 4*j.base)
	var snap []byte
	if compact {
		snap = j.state.encode()
		j.grown = 0
	}
	j.mu.Unlock()

	var err error
	switch {
	case compact:
		err = j.replace(snap)
	case len(buf) > 0:
		if _, err = j.f.Write(buf); err == nil {
			err = j.f.Sync()
		}
	}

	j.mu.Lock()
	j.spare = buf[:0]
	if err != nil {
		// The file may hold part of buf: rewrite it whole from the state
		// (which holds every record) on the next try.
		err = fmt.Errorf("writing the ledger file %s: %w", j.path, err)
		if j.err == nil {
			j.log.Error("entitlements: the ledger file cannot be written; reservations are refused until it can", "err", err)
		}
		j.rewrite = true
		j.setErr(err)
	} else {
		if j.err != nil {
			j.log.Info("entitlements: the ledger file is written again", "path", j.path)
		}
		j.rewrite = false
		j.setErr(nil)
		if compact {
			j.base = int64(len(snap))
		}
	}
	pending = j.rewrite
	j.mu.Unlock()
	for _, w := range waiters {
		w <- err
	}
	return pending
}

// readPID returns the pid a lock file names, for messages.
func readPID(f *os.File) string {
	b := make([]byte, 32)
	n, _ := f.ReadAt(b, 0)
	s := string(bytes.TrimSpace(b[:n]))
	if _, err := strconv.Atoi(s); err != nil {
		return ""
	}
	return s
}
