package scratch

import (
	"os/exec"
	"runtime"
)

// StartChild starts cmd (whose SysProcAttr is ChildProcAttr) from a
// goroutine locked to its own OS thread, kept until the child has exited:
// Linux sends the parent-death signal when the *thread* that started a
// child ends (golang/go#27505), and Go ends the thread of a goroutine that
// returns locked. The goroutine unlocks after the child is gone, so its
// thread goes back to Go instead of ending and taking the children of
// other goroutines that ran on it before with it. exited is called with
// cmd.Wait's error, then the returned channel is closed.
func StartChild(cmd *exec.Cmd, exited func(error)) (<-chan struct{}, error) {
	done := make(chan struct{})
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		err := cmd.Wait()
		if exited != nil {
			exited(err)
		}
		close(done)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return done, nil
}
