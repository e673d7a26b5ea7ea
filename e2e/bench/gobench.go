package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
)

// goBench runs one Go benchmark once (`go test -bench pattern -benchtime
// 1x pkg`, the servers it needs from bin/) and returns the metrics each
// sub-benchmark reported, by name (without the Benchmark prefix and the
// GOMAXPROCS suffix) and unit.
func (b *bench) goBench(ctx context.Context, pkg, pattern string) (map[string]map[string]float64, error) {
	fmt.Fprintf(os.Stderr, "  go test -bench %s %s\n", pattern, pkg)
	cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", pattern, "-benchtime", "1x", "-timeout", "60m", pkg)
	cmd.Env = append(os.Environ(), "LIFEBOAT_TESTBIN="+b.bin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("go test -bench %s %s: %w\n%s", pattern, pkg, err, tail(out))
	}
	res := parseGoBench(out)
	if len(res) == 0 {
		return nil, fmt.Errorf("go test -bench %s %s reported no benchmark\n%s", pattern, pkg, tail(out))
	}
	return res, nil
}

// procSuffix is the "-N" go test adds to a benchmark's name when
// GOMAXPROCS (N) is not 1; the child runs with this process's.
var procSuffix = func() string {
	if n := runtime.GOMAXPROCS(0); n > 1 {
		return "-" + strconv.Itoa(n)
	}
	return ""
}()

// parseGoBench reads the result lines of `go test -bench`:
// "BenchmarkX/sub-2   1   123 ns/op   4.5 ms/backup".
func parseGoBench(out []byte) map[string]map[string]float64 {
	res := make(map[string]map[string]float64)
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") || len(f)%2 != 0 {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue
		}
		name := strings.TrimPrefix(f[0], "Benchmark")
		if procSuffix != "" {
			name = strings.TrimSuffix(name, procSuffix)
		}
		m := make(map[string]float64)
		for i := 2; i+1 < len(f); i += 2 {
			if v, err := strconv.ParseFloat(f[i], 64); err == nil {
				m[f[i+1]] = v
			}
		}
		res[name] = m
	}
	return res
}

// metric returns one metric of one sub-benchmark, or an error naming what
// is missing.
func metric(res map[string]map[string]float64, name, unit string) (float64, error) {
	v, ok := res[name][unit]
	if !ok {
		return 0, fmt.Errorf("benchmark %s reported no %s", name, unit)
	}
	return v, nil
}

// rewrapAtScale adds the rows of BenchmarkRewrapAtScale: 10,000 backups
// rewrapped (and verified) on the local keyring and on Vault transit (a real
// dev server), at the default concurrency against one at a time.
func (b *bench) rewrapAtScale(ctx context.Context) error {
	res, err := b.goBench(ctx, "./internal/rotation", "^BenchmarkRewrapAtScale$")
	if err != nil {
		return err
	}
	for _, p := range []struct{ name, label string }{{"local", "local keyring"}, {"vault", "Vault transit"}} {
		one, err := metric(res, "RewrapAtScale/"+p.name+"/concurrency-1", "ms/backup")
		if err != nil {
			return err
		}
		many, err := metric(res, "RewrapAtScale/"+p.name+"/concurrency-8", "ms/backup")
		if err != nil {
			return err
		}
		b.rows = append(b.rows, row{measure: "keys rotate of 10,000 backups, " + p.label + ": time per backup (concurrency 8 vs one at a time)",
			lifeboat: fmt.Sprintf("%.2f ms", many), peer: fmt.Sprintf("%.2f ms (concurrency 1)", one), ratio: many / one, goal: "—"})
	}
	return nil
}

// manifests20k adds the rows of BenchmarkManifests20k: the export of 20,200
// objects from a real kube-apiserver against kubectl get -A -o yaml of the
// same resources.
func (b *bench) manifests20k(ctx context.Context) error {
	res, err := b.goBench(ctx, "./internal/source/manifests", "^BenchmarkManifests20k$")
	if err != nil {
		return err
	}
	var v [4]float64
	for i, q := range []struct{ name, unit string }{
		{"Manifests20k/lifeboat", "objects/s"}, {"Manifests20k/kubectl", "objects/s"},
		{"Manifests20k/lifeboat", "peak-rss-MiB"}, {"Manifests20k/kubectl", "peak-rss-MiB"},
	} {
		if v[i], err = metric(res, q.name, q.unit); err != nil {
			return err
		}
	}
	// The ratio is of times (the peer's rate over lifeboat's): below 1,
	// lifeboat is faster.
	r := v[1] / v[0]
	b.rows = append(b.rows, row{measure: "manifests export of 20,200 objects from kube-apiserver (vs kubectl get -A -o yaml): time",
		lifeboat: fmt.Sprintf("%.0f objects/s", v[0]), peer: fmt.Sprintf("%.0f objects/s", v[1]), ratio: r, goal: "≤ 1.00", pass: r <= 1, hasVerdict: true})
	b.rows = append(b.rows, row{measure: "manifests export of 20,200 objects: peak RSS",
		lifeboat: fmt.Sprintf("%.0f MiB", v[2]), peer: fmt.Sprintf("%.0f MiB (kubectl)", v[3]), ratio: v[2] / v[3], goal: "—"})
	return nil
}
