package embedded

import (
	"os/exec"
	"syscall"
)

// sysProcAttr puts the child in its own process group, so a signal reaches
// anything it starts, and kills it if lifeboat dies, so a killed drill does
// not leave a server holding restored data behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

func signalGroup(cmd *exec.Cmd, sig syscall.Signal) {
	syscall.Kill(-cmd.Process.Pid, sig)
}
