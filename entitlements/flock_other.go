//go:build !unix

package entitlements

import "os"

// lockFile opens the lock file at path without locking it: on systems
// without flock, nothing keeps a second process from opening the same
// ledger file, and the operator must make sure that only one does.
func lockFile(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
}

// unlockFile closes the lock file.
func unlockFile(f *os.File) error { return f.Close() }
