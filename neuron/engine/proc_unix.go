//go:build unix && !linux

package engine

import "syscall"

// sysProcAttr puts the engine in its own process group, so that a signal
// reaches every process it spawns. Only Linux can also tie the engine's
// life to the neuron's.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
