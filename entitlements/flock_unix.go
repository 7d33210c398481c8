//go:build unix

package entitlements

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"
)

// lockFile takes an exclusive flock on the file at path (created when
// missing) and writes the process id into it. The lock is released by
// unlockFile, or by the system when the process ends, however it ends.
// It returns an error wrapping ErrLedgerLocked when another open file
// holds the lock.
func lockFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	// A lock this process released may still be held for an instant by a
	// child it is forking: the child shares the descriptor until its exec
	// closes it (close-on-exec). Wait for that, briefly, when the holder is
	// this process.
	for deadline := time.Now().Add(selfLockWait); errors.Is(err, syscall.EWOULDBLOCK) &&
		readPID(f) == strconv.Itoa(os.Getpid()) && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	}
	if err != nil {
		pid := readPID(f)
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			if pid != "" {
				return nil, fmt.Errorf("%w: %s is held by process %s", ErrLedgerLocked, path, pid)
			}
			return nil, fmt.Errorf("%w: %s is held", ErrLedgerLocked, path)
		}
		return nil, fmt.Errorf("entitlements: locking %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

// selfLockWait bounds the wait for a lock that this process holds (see
// lockFile).
const selfLockWait = time.Second

// unlockFile releases the lock of lockFile. The lock file stays.
func unlockFile(f *os.File) error {
	return f.Close() // closing the last descriptor releases the flock
}
