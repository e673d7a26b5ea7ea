// Command lifeboat backs up Kubernetes clusters that hold PHI, rotates the
// keys that protect the backups, and runs disaster-recovery drills that
// measure RTO and RPO. See README.md and docs/.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
)

// envCPUProfile names a file to write a CPU profile of the run to; make
// bench sets it to show where a backup's time goes. envAllocProfile names
// one for a profile of the memory allocated (pprof's allocs), written at
// exit.
const (
	envCPUProfile   = "LIFEBOAT_CPUPROFILE"
	envAllocProfile = "LIFEBOAT_ALLOCPROFILE"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if path := os.Getenv(envCPUProfile); path != "" {
		if f, err := os.Create(path); err == nil && pprof.StartCPUProfile(f) == nil {
			defer f.Close()
		} else {
			fmt.Fprintf(os.Stderr, "lifeboat: %s: cannot profile to %s\n", envCPUProfile, path)
		}
	}
	cmd := newRootCommand(os.Stdout, os.Stderr)
	err := cmd.ExecuteContext(ctx)
	code := exitCode(err)
	if err != nil && !isReported(err) {
		fmt.Fprintf(os.Stderr, "lifeboat: %v\n", err)
	}
	stop()
	pprof.StopCPUProfile()
	if path := os.Getenv(envAllocProfile); path != "" {
		if f, err := os.Create(path); err != nil || pprof.Lookup("allocs").WriteTo(f, 0) != nil {
			fmt.Fprintf(os.Stderr, "lifeboat: %s: cannot write a profile to %s\n", envAllocProfile, path)
		} else {
			f.Close()
		}
	}
	os.Exit(code)
}
