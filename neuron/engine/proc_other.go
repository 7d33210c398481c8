//go:build !unix

package engine

import (
	"errors"
	"os"
	"syscall"
)

// sysProcAttr is nil where process groups are not available: only the
// engine itself is signalled, not what it spawns.
func sysProcAttr() *syscall.SysProcAttr { return nil }

// terminate asks the engine to stop, or kills it where the platform has no
// such request.
func terminate(p *os.Process) error {
	if err := p.Signal(os.Interrupt); err == nil {
		return nil
	}
	return kill(p)
}

// kill stops the engine at once.
func kill(p *os.Process) error {
	err := p.Kill()
	if errors.Is(err, os.ErrProcessDone) {
		return nil
	}
	return err
}
