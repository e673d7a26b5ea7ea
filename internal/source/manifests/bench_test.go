package manifests_test

import (
	"bufio"
	"context"
	"io"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/source/manifests"
	"github.com/lifeboat-dr/lifeboat/internal/testenv"
)

// BenchmarkManifests20k exports a cluster holding 20,000 ConfigMaps of
// about 300 bytes each (over 20 namespaces) besides the bootstrap
// objects, and reports objects/s, the peak Go heap (sampled every 5 ms
// during the export) and the process's peak RSS (VmHWM, reset before the
// export through /proc/self/clear_refs when the kernel allows it).
// Seeding is outside the timer.
func BenchmarkManifests20k(b *testing.B) {
	c := testenv.StartCluster(b)
	cfg := c.RESTConfig(c.Token)
	seedStart := time.Now()
	testenv.SeedConfigMaps(b, cfg, 20000, 20, 300, 32)
	b.Logf("seeded 20000 ConfigMaps in %s", time.Since(seedStart).Round(time.Millisecond))
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
