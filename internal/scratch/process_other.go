//go:build !linux

package scratch

import (
	"os/exec"
	"syscall"
)

// ChildProcAttr is nil where process groups and parent-death signals are
// not available.
func ChildProcAttr() *syscall.SysProcAttr { return nil }

// SignalGroup signals the child itself.
func SignalGroup(cmd *exec.Cmd, sig syscall.Signal) {
	if sig == syscall.SIGKILL {
		cmd.Process.Kill()
		return
	}
	cmd.Process.Signal(sig)
}
