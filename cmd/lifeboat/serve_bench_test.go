package main

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/testenv"
)

// BenchmarkServeIdle measures the real `lifeboat serve` binary, idle with
// five schedules loaded (none due within the minute), over one minute:
// resident memory at the end and its peak, and CPU time as a share of one
// core. Targets (issue 10): < 64 MiB RSS, < 1% of a core.
func BenchmarkServeIdle(b *testing.B) {
	dir := b.TempDir()
	bin := filepath.Join(dir, "lifeboat")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	cfgDir := filepath.Join(dir, "config")
	if err := os.MkdirAll(cfgDir, 0o700); err != nil {
		b.Fatal(err)
	}
	enc := filepath.Join(dir, "enc.yaml")
	if err := os.WriteFile(enc, []byte(testEncryptionConfig), 0o600); err != nil {
		b.Fatal(err)
	}
	keyring := filepath.Join(dir, "keyring.json")
	if out, err := exec.Command(bin, "keys", "init", "--keyring", keyring, "--key", "bench").CombinedOutput(); err != nil {
		b.Fatalf("keys init: %v\n%s", err, out)
	}
	signing := filepath.Join(dir, "signing.pem")
	if _, err := evidence.LoadOrCreateSigner(signing); err != nil {
		b.Fatal(err)
	}
	cfg := fmt.Sprintf(`apiVersion: lifeboat.dev/v1alpha1
kind: Store
metadata: {name: local}
spec: {type: fs, path: %s, objectLock: {mode: COMPLIANCE, retention: 1d}}
---
apiVersion: lifeboat.dev/v1alpha1
kind: KeyProvider
metadata: {name: local}
spec: {type: local, keyring: %s}
---
apiVersion: lifeboat.dev/v1alpha1
kind: BackupPlan
metadata: {name: clinic}
spec:
  store: local
  keyProvider: local
  retention: 1d
  sources:
    - encryptionConfig: {file: %s}
`, strconv.Quote(filepath.Join(dir, "store")), strconv.Quote(keyring), strconv.Quote(enc))
	// Five schedules, none due in the next minute or so.
	hour := (time.Now().UTC().Hour() + 12) % 24
	for i := range 5 {
		cfg += fmt.Sprintf("---\napiVersion: lifeboat.dev/v1alpha1\nkind: Schedule\nmetadata: {name: s%d}\nspec: {cron: \"%d %d * * *\", backupPlan: clinic}\n", i, i*7, hour)
	}
	if err := os.WriteFile(filepath.Join(cfgDir, "lifeboat.yaml"), []byte(cfg), 0o600); err != nil {
		b.Fatal(err)
	}
	port := testenv.FreePort(b)
	cmd := exec.Command(bin, "--config", cfgDir, "serve", "--leader-elect=false", "--identity", "bench",
		"--listen", "127.0.0.1:"+strconv.Itoa(port), "--signing-key", signing)
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(port) + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("serve not ready:\n%s", out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	pid := cmd.Process.Pid
	const window = time.Minute
	b.ResetTimer()
	for range b.N {
		cpu0 := cpuTime(b, pid)
		t0 := time.Now()
		time.Sleep(window)
		cpu := cpuTime(b, pid) - cpu0
		elapsed := time.Since(t0)
		b.ReportMetric(100*cpu.Seconds()/elapsed.Seconds(), "cpu-%-of-core")
	}
	b.StopTimer()
	b.ReportMetric(procStatusMiB(b, pid, "VmRSS"), "rss-MiB")
	b.ReportMetric(procStatusMiB(b, pid, "VmHWM"), "peak-rss-MiB")
}

// cpuTime is the process's user plus system CPU time (/proc/PID/stat).
func cpuTime(b *testing.B, pid int) time.Duration {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name, which is in parentheses.
	rest := string(data[strings.LastIndexByte(string(data), ')')+2:])
	f := strings.Fields(rest)
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	const clkTck = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / clkTck
}

// procStatusMiB reads a kB field of /proc/PID/status in MiB.
func procStatusMiB(b *testing.B, pid int, field string) float64 {
	b.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb / 1024
		}
	}
	b.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}
