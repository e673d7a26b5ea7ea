package main

import (
	"strings"
	"testing"
)

// TestParseGoBench: result lines are read by sub-benchmark and unit, the
// GOMAXPROCS suffix dropped (none when it is 1, so a name's own "-1"
// stays); log lines and PASS are not results.
func TestParseGoBench(t *testing.T) {
	out := []byte(strings.ReplaceAll(`goos: linux
BenchmarkRewrapAtScale/local/concurrency-1SUFFIX         	       1	29165501080 ns/op	         2.916 ms/backup
    bench_test.go:99: seeded 20000 ConfigMaps in 1s
BenchmarkManifests20k/lifeboatSUFFIX 	       1	3000000000 ns/op	      6900 objects/s	        62.5 peak-rss-MiB
PASS
`, "SUFFIX", procSuffix))
	res := parseGoBench(out)
	if v, err := metric(res, "RewrapAtScale/local/concurrency-1", "ms/backup"); err != nil || v != 2.916 {
		t.Fatalf("rewrap: %v, %v", v, err)
	}
	if v, err := metric(res, "Manifests20k/lifeboat", "peak-rss-MiB"); err != nil || v != 62.5 {
		t.Fatalf("manifests: %v, %v", v, err)
	}
	if _, err := metric(res, "Manifests20k/kubectl", "objects/s"); err == nil {
		t.Fatal("a missing benchmark gave a metric")
	}
	if len(res) != 2 {
		t.Fatalf("%d results: %v", len(res), res)
	}
}
