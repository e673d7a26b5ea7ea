// Command lifeboat backs up Kubernetes clusters that hold PHI, rotates the
// keys that protect the backups, and runs disaster-recovery drills that
// measure RTO and RPO. See README.md and docs/.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd := newRootCommand(os.Stdout, os.Stderr)
	err := cmd.ExecuteContext(ctx)
	code := exitCode(err)
	if err != nil && !isReported(err) {
		fmt.Fprintf(os.Stderr, "lifeboat: %v\n", err)
	}
	stop()
	os.Exit(code)
}
