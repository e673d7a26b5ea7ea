package manifests_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/source/manifests"
	"github.com/lifeboat-dr/lifeboat/internal/testenv"
)

// BenchmarkManifests20k exports a cluster holding 20,000 ConfigMaps of
// about 300 bytes each (over 20 namespaces) besides the bootstrap
// objects. lifeboat reports objects/s, the peak Go heap (sampled every 5
// ms during the export) and the process's peak RSS (VmHWM, reset before
// the export through /proc/self/clear_refs when the kernel allows it).
// kubectl, side by side on the same cluster, runs the usual "export
// everything" command: `kubectl get <every listable resource but the ones
// lifeboat leaves out by default> -A -o yaml` (chunks of 500, as lifeboat
// pages), and reports objects/s and its own peak RSS. Seeding is outside
// the timers.
func BenchmarkManifests20k(b *testing.B) {
	c := testenv.StartCluster(b)
	cfg := c.RESTConfig(c.Token)
	seedStart := time.Now()
	testenv.SeedConfigMaps(b, cfg, 20000, 20, 300, 32)
	b.Logf("seeded 20000 ConfigMaps in %s", time.Since(seedStart).Round(time.Millisecond))
	b.Run("lifeboat", func(b *testing.B) { benchLifeboat(b, c) })
	b.Run("kubectl", func(b *testing.B) { benchKubectl(b, c) })
}

func benchLifeboat(b *testing.B, c *testenv.Cluster) {
	cfg := c.RESTConfig(c.Token)
	ctx := context.Background()

	runtime.GC()
	resetHWM := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
	var peakHeap atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(s)
			if v := s[0].Value.Uint64(); v > peakHeap.Load() {
				peakHeap.Store(v)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()

	var objects int
	var tarBytes int64
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		e, err := manifests.Start(ctx, manifests.Options{Config: cfg})
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(io.Discard, e)
		if err != nil {
			b.Fatal(err)
		}
		res, err := e.Result()
		if err != nil {
			b.Fatal(err)
		}
		e.Close()
		if res.Objects < 20000 || len(res.Skipped) != 0 {
			b.Fatalf("exported %d objects, skipped %v", res.Objects, res.Skipped)
		}
		objects += res.Objects
		tarBytes += n
	}
	elapsed := time.Since(start)
	b.StopTimer()
	close(stop)
	<-sampled

	b.ReportMetric(float64(objects)/elapsed.Seconds(), "objects/s")
	b.ReportMetric(float64(peakHeap.Load())/(1<<20), "peak-heap-MiB")
	b.ReportMetric(float64(tarBytes)/float64(b.N)/(1<<20), "tar-MiB/op")
	if hwm, ok := vmHWM(b); ok {
		b.ReportMetric(float64(hwm)/(1<<20), "peak-rss-MiB")
	}
	b.Logf("objects/op %d, VmHWM reset before export: %v", objects/b.N, resetHWM)
}

// benchKubectl times kubectl exporting what lifeboat exports by default.
func benchKubectl(b *testing.B, c *testenv.Cluster) {
	bin := testenv.Binary(b, "kubectl")
	out, err := exec.Command(bin, "--kubeconfig", c.Kubeconfig, "api-resources", "--verbs=list", "-o", "name").Output()
	if err != nil {
		b.Fatalf("kubectl api-resources: %v", err)
	}
	skip := map[string]bool{"events": true, "events.events.k8s.io": true, "leases.coordination.k8s.io": true,
		"componentstatuses": true, "ipaddresses.networking.k8s.io": true}
	var resources []string
	for _, r := range strings.Fields(string(out)) {
		if !skip[r] {
			resources = append(resources, r)
		}
	}
	var objects, yamlBytes, peakRSS int64
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		cmd := exec.Command(bin, "--kubeconfig", c.Kubeconfig, "get", strings.Join(resources, ","), "-A", "-o", "yaml", "--chunk-size=500")
		var w itemCounter
		cmd.Stdout = &w
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			b.Fatalf("kubectl get: %v\n%s", err, stderr.String())
		}
		if w.items < 20000 {
			b.Fatalf("kubectl printed %d objects", w.items)
		}
		objects += w.items
		yamlBytes += w.bytes
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			peakRSS = max(peakRSS, ru.Maxrss<<10)
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(objects)/elapsed.Seconds(), "objects/s")
	b.ReportMetric(float64(yamlBytes)/float64(b.N)/(1<<20), "yaml-MiB/op")
	if peakRSS > 0 {
		b.ReportMetric(float64(peakRSS)/(1<<20), "peak-rss-MiB")
	}
	b.Logf("objects/op %d over %d resources", objects/int64(b.N), len(resources))
}

// itemCounter counts the bytes of kubectl's YAML list and its items: the
// lines that open one ("- apiVersion: " at the start of a line).
type itemCounter struct {
	items, bytes int64
	mid          []byte // an incomplete last line
}

func (w *itemCounter) Write(p []byte) (int, error) {
	w.bytes += int64(len(p))
	buf := append(w.mid, p...)
	for {
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			break
		}
		if bytes.HasPrefix(buf[:i], []byte("- apiVersion: ")) {
			w.items++
		}
		buf = buf[i+1:]
	}
	w.mid = append(w.mid[:0], buf...)
	return len(p), nil
}

// vmHWM returns the process's peak resident set size from
// /proc/self/status.
func vmHWM(b *testing.B) (int64, bool) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		b.Logf("peak RSS: %v", err)
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, false
			}
			return kb << 10, true
		}
	}
	return 0, false
}
