package vault

import (
	"os/exec"
	"syscall"
)

// sysProcAttr puts the server in its own process group and kills it if
// lifeboat dies, so a killed drill leaves no Vault holding restored keys.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

func signalGroup(cmd *exec.Cmd, sig syscall.Signal) {
	syscall.Kill(-cmd.Process.Pid, sig)
}
