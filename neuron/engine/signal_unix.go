//go:build unix

package engine

import (
	"errors"
	"os"
	"syscall"
)

// terminate asks the engine's process group to stop (SIGTERM).
func terminate(p *os.Process) error { return signalGroup(p, syscall.SIGTERM) }

// kill stops the engine's process group at once (SIGKILL). It is also sent
// after the engine itself exited, to reap what it left behind; the group id
// cannot be reused by a new process while any member of the group lives.
func kill(p *os.Process) error { return signalGroup(p, syscall.SIGKILL) }

func signalGroup(p *os.Process, sig syscall.Signal) error {
	err := syscall.Kill(-p.Pid, sig)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}
