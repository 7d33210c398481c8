package engine

import "syscall"

// sysProcAttr puts the engine in its own process group, so that a signal
// reaches every process it spawns, and kills it should the neuron die.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
