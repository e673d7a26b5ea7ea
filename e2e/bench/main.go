// Command bench runs lifeboat's etcd backup and restore side by side with
// the tools they replace (etcdctl, etcdutl, restic) on data it generates
// the same way every time, at several database sizes, then runs the Go
// benchmarks of keys rotate at scale and of the manifests export (beside
// kubectl), and prints one table:
// each measure, lifeboat's figure, the peer's from the same run, the
// ratio, the goal and PASS or FAIL. With -out it also writes the table to
// a Markdown file (docs/performance.md). `make bench` runs it.
//
// The data: keys /registry/bench/ns-NN/obj-NNNNNNN with 6 KiB values, the
// first half pseudo-random (PCG seeded with the key's index), the second
// half text, written by 16 writers until etcd reports the target database
// size. Nothing is downloaded; the servers and tools come from bin/.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"
)

func main() {
	binDir := flag.String("bin", "bin", "directory holding etcd, etcdctl, etcdutl and lifeboat")
	sizes := flag.String("sizes", "256MiB,1GiB,2GiB", "database sizes to measure, comma-separated")
	runs := flag.Int("runs", 3, "runs of each command; the median is reported")
	out := flag.String("out", "", "also write the table to this Markdown file")
	work := flag.String("dir", "", "work directory (default: a new temporary directory, removed at the end)")
	profile := flag.String("cpuprofile", "", "write a CPU profile of lifeboat's last backup run of each size to this directory")
	keep := flag.Bool("keep", false, "keep each size's data (with -dir) for a closer look")
	goBenchmarks := flag.Bool("go-benchmarks", true, "also run the Go benchmarks whose rows end the table (keys rotate of 10,000 backups, the manifests export of 20,200 objects)")
	flag.Parse()

	bin, err := filepath.Abs(*binDir)
	if err != nil {
		log.Fatal(err)
	}
	dir := *work
	if dir == "" {
		if dir, err = os.MkdirTemp("", "lifeboat-bench-"); err != nil {
			log.Fatal(err)
		}
	}
	failed, err := measure(dir, bin, *sizes, *runs, *out, *profile, *keep, *goBenchmarks)
	if *work == "" {
		// Not deferred: log.Fatal and os.Exit skip deferred calls, and a
		// failed size would leave gigabytes in the temporary directory.
		os.RemoveAll(dir)
	}
	if err != nil {
		log.Fatal(err)
	}
	if failed {
		os.Exit(1)
	}
}

// measure runs every size and the Go benchmarks in dir, prints the table
// (and writes it to out), and reports whether a goal failed.
func measure(dir, bin, sizes string, runs int, out, profile string, keep, goBenchmarks bool) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Hour)
	defer cancel()
	b := &bench{bin: bin, dir: dir, runs: runs, profileDir: profile, keep: keep}
	if err := b.tools(); err != nil {
		return false, err
	}
	for _, s := range strings.Split(sizes, ",") {
		n, err := parseSize(strings.TrimSpace(s))
		if err != nil {
			return false, err
		}
		if err := b.size(ctx, n); err != nil {
			return false, fmt.Errorf("size %s: %w", s, err)
		}
	}
	if goBenchmarks {
		if err := b.rewrapAtScale(ctx); err != nil {
			return false, fmt.Errorf("keys rotate at scale: %w", err)
		}
		if err := b.manifests20k(ctx); err != nil {
			return false, fmt.Errorf("manifests export: %w", err)
		}
	}
	table := b.table()
	fmt.Print(table)
	if out != "" {
		if err := writeDoc(out, table, b.machine()); err != nil {
			return false, err
		}
		fmt.Printf("\nwritten to %s\n", out)
	}
	return b.failed(), nil
}
