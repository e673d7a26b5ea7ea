package scratch

import (
	"os/exec"
	"syscall"
)

// ChildProcAttr puts a server child in its own process group, so a signal
// reaches anything it starts, and kills it if the thread that started it
// ends, so a killed drill leaves no server holding restored data behind.
// The caller starts the child from a goroutine locked to its OS thread for
// the child's whole life (golang/go#27505).
func ChildProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// SignalGroup sends sig to the child's process group.
func SignalGroup(cmd *exec.Cmd, sig syscall.Signal) {
	syscall.Kill(-cmd.Process.Pid, sig)
}
