package main

import (
	"strings"
	"testing"
	"time"
)

// TestDrillToEtcd reads the restore phases' time and each phase's peak
// memory from a drill's JSON output, and refuses a drill whose restore
// phases did not all succeed.
func TestDrillToEtcd(t *testing.T) {
	out := []byte(`[  0.00s] drill started
{"report":{"phases":[
 {"name":"select","durationMs":5,"outcome":"success","peakMemoryBytes":52428800},
 {"name":"fetch","durationMs":10,"outcome":"success","peakMemoryBytes":52428800},
 {"name":"decrypt","durationMs":2700,"outcome":"success","peakMemoryBytes":2576980377},
 {"name":"restore etcd","durationMs":10100,"outcome":"success","peakMemoryBytes":5153960755},
 {"name":"start etcd","durationMs":3500,"outcome":"success"},
 {"name":"verify","durationMs":0,"outcome":"skipped"}]}}
`)
	d, mem, err := drillToEtcd(out)
	if err != nil {
		t.Fatal(err)
	}
	if d != 16310*time.Millisecond {
		t.Errorf("restore phases took %v, want 16.31s", d)
	}
	if got := strings.Join(mem, ", "); got != "select 50 MiB, fetch 50 MiB, decrypt 2.4 GiB, restore etcd 4.8 GiB" {
		t.Errorf("memory: %s", got)
	}
	bad := []byte(strings.Replace(string(out), `"restore etcd","durationMs":10100,"outcome":"success"`, `"restore etcd","durationMs":10100,"outcome":"failure"`, 1))
	if _, _, err := drillToEtcd(bad); err == nil || !strings.Contains(err.Error(), "restore etcd") {
		t.Errorf("a failed restore phase: %v", err)
	}
}

// TestMedianIndex picks the run of median wall time, so that figures from
// that run (its CPU, the member's CPU) are read together.
func TestMedianIndex(t *testing.T) {
	ss := []sample{{wall: 3 * time.Second}, {wall: time.Second}, {wall: 2 * time.Second}}
	if i := medianIndex(ss); i != 2 {
		t.Errorf("medianIndex = %d, want 2", i)
	}
	if m := median(ss); m.wall != 2*time.Second {
		t.Errorf("median = %v", m.wall)
	}
}

// TestBackupFloors states the floor of shared CPU over the cores, and the
// restic goal's relation to etcdctl's own time only when it is below it.
func TestBackupFloors(t *testing.T) {
	lb := sample{wall: 6 * time.Second, cpu: 5 * time.Second}
	ctl := sample{wall: 5 * time.Second}
	got := backupFloors("1 GiB", lb, ctl, sample{wall: 8 * time.Second}, 4*time.Second, 2)
	want := "- 1 GiB: lifeboat took 6.00 s; in that run its CPU and the member's (5.00 s + 4.00 s) over 2 cores take at least 4.50 s. " +
		"The goal against etcdctl + restic (4.00 s) is less than etcdctl's own time to save a snapshot of the same data (5.00 s)."
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	got = backupFloors("256 MiB", lb, ctl, sample{wall: 12 * time.Second}, 4*time.Second, 2)
	if strings.Contains(got, "restic") || !strings.HasSuffix(got, "take at least 4.50 s.") {
		t.Errorf("a goal above etcdctl's time: %s", got)
	}
}
