package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/lifeboat-dr/lifeboat/internal/job"
	"github.com/lifeboat-dr/lifeboat/internal/keys/local"
)

const valueSize = 6 << 10

// value is key i's value: 3 KiB from a PCG seeded with i, then 3 KiB of
// text, so that it compresses to about half.
func value(i int) []byte {
	v := make([]byte, valueSize)
	r := rand.New(rand.NewPCG(uint64(i), 0x6c696665626f6174))
	for j := 0; j < valueSize/2; j += 8 {
		x := r.Uint64()
		for k := 0; k < 8; k++ {
			v[j+k] = byte(x >> (8 * k))
		}
	}
	text := fmt.Appendf(nil, `{"kind":"Secret","metadata":{"name":"obj-%07d","namespace":"ns-%02d"},"type":"Opaque","data":`, i, i%50)
	for j := valueSize / 2; j < valueSize; j += len(text) {
		copy(v[j:], text)
	}
	return v
}

// generate writes keys until etcd reports a database of at least target
// bytes, and returns the key count and the size reached.
func generate(ctx context.Context, endpoint string, target int64) (int, int64, error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return 0, 0, err
	}
	defer cli.Close()
	// About one key per 7 KiB of database; written in rounds until the
	// size is reached.
	var next atomic.Int64
	size := int64(0)
	for size < target {
		round := max(1000, int((target-size)/(7<<10)))
		end := next.Load() + int64(round)
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for range 16 {
			wg.Go(func() {
				for {
					i := next.Add(1) - 1
					if i >= end {
						return
					}
					key := fmt.Sprintf("/registry/bench/ns-%02d/obj-%07d", i%50, i)
					if _, err := cli.Put(ctx, key, string(value(int(i)))); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			return 0, 0, err
		}
		next.Store(end)
		st, err := cli.Status(ctx, endpoint)
		if err != nil {
			return 0, 0, err
		}
		size = st.DbSize
	}
	return int(next.Load()), size, nil
}

const planConfig = `apiVersion: lifeboat.dev/v1alpha1
kind: Store
metadata: {name: bench}
spec:
  type: fs
  path: %[1]q
  objectLock: {mode: COMPLIANCE, retention: 1d}
---
apiVersion: lifeboat.dev/v1alpha1
kind: KeyProvider
metadata: {name: bench}
spec: {type: local, keyring: %[2]q}
---
apiVersion: lifeboat.dev/v1alpha1
kind: BackupPlan
metadata: {name: bench}
spec:
  store: bench
  keyProvider: bench
  retention: 1d
  sources:
    - etcd: {endpoints: [%[3]q], dialTimeout: 30s}
---
apiVersion: lifeboat.dev/v1alpha1
kind: Drill
metadata: {name: bench}
spec:
  backupPlan: bench
  select: {latest: true}
  checks:
    - secretsReadable: {}
  targets: {rto: 1h, rpo: 1000h}
`

// size measures one database size.
func (b *bench) size(ctx context.Context, target int64) error {
	label := sizeText(target)
	dir := filepath.Join(b.dir, strconv.FormatInt(target>>20, 10)+"MiB")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if !b.keep {
		defer os.RemoveAll(dir)
	}
	src, _, err := b.startEtcd(ctx, "source", filepath.Join(dir, "source"), 0)
	if err != nil {
		return err
	}
	defer src.stop()
	t0 := time.Now()
	keys, dbSize, err := generate(ctx, src.endpoint, target)
	if err != nil {
		return fmt.Errorf("generate: %w", err)
	}
	fmt.Fprintf(os.Stderr, "%s: %d keys of 6 KiB written in %s, etcd database %s\n", label, keys, time.Since(t0).Round(time.Second), sizeText(dbSize))

	keyring := filepath.Join(dir, "keyring.json")
	if _, err := local.Create(ctx, local.Options{Path: keyring}, "bench-kek"); err != nil {
		return err
	}
	cfg := filepath.Join(dir, "lifeboat.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, planConfig, filepath.Join(dir, "store"), keyring, src.endpoint), 0o600); err != nil {
		return err
	}
	signing := filepath.Join(dir, "signing.pem")
	lifeboat := filepath.Join(b.bin, "lifeboat")

	var lb, ctl, rst []sample
	var lbSrcCPU, ctlSrcCPU []time.Duration // the source etcd's CPU during each
	var lbStored, resticStored int64
	var backupID, snap string
	for r := range b.runs {
		// etcdctl, then lifeboat, then restic on etcdctl's file.
		snap = filepath.Join(dir, fmt.Sprintf("snap-%d.db", r))
		c0 := procCPU(src.cmd.Process.Pid)
		s, _, err := b.run(ctx, nil, filepath.Join(b.bin, "etcdctl"), "--endpoints", src.endpoint, "snapshot", "save", snap)
		if err != nil {
			return err
		}
		ctl, ctlSrcCPU = append(ctl, s), append(ctlSrcCPU, procCPU(src.cmd.Process.Pid)-c0)
		var env []string
		if b.profileDir != "" && r == b.runs-1 {
			env = append(env, "LIFEBOAT_CPUPROFILE="+filepath.Join(b.profileDir, "backup-"+strconv.FormatInt(target>>20, 10)+"MiB.pprof"))
		}
		c0 = procCPU(src.cmd.Process.Pid)
		s, out, err := b.run(ctx, env, lifeboat, "--config", cfg, "backup", "run", "bench", "--signing-key", signing, "-o", "json", "--log-level", "warn")
		if err != nil {
			return err
		}
		lb, lbSrcCPU = append(lb, s), append(lbSrcCPU, procCPU(src.cmd.Process.Pid)-c0)
		backupID = jsonField(out, "backup")
		if backupID == "" {
			return fmt.Errorf("lifeboat backup run printed no backup ID:\n%s", tail(out))
		}
		lbStored = dirSize(filepath.Join(dir, "store", "objects", "backups", backupID))
		repo := filepath.Join(dir, fmt.Sprintf("restic-%d", r))
		renv := []string{"RESTIC_PASSWORD=bench-only", "RESTIC_CACHE_DIR=" + filepath.Join(dir, "restic-cache")}
		if _, _, err := b.run(ctx, renv, b.restic, "-r", repo, "init"); err != nil {
			return err
		}
		s, _, err = b.run(ctx, renv, b.restic, "-r", repo, "backup", "--compression", "auto", snap)
		if err != nil {
			return err
		}
		rst = append(rst, s)
		resticStored = dirSize(repo)
		if r < b.runs-1 {
			os.Remove(snap)
			os.RemoveAll(repo)
		}
	}
	src.stop()

	// Restore to a running etcd: etcdutl from etcdctl's file, lifeboat
	// from its backup (fetch, verify, decrypt, restore), each then started.
	var lbR, peerR []sample
	var lbStart, peerStart []time.Duration
	for r := range b.runs {
		peerPort, err := freePort()
		if err != nil {
			return err
		}
		peer := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
		// The same restore lifeboat does, which is what etcd's
		// documentation asks of a Kubernetes cluster's restore: revisions
		// bumped past any a client saw, and the old ones marked compacted.
		s, took, err := b.etcdutlRestore(ctx, snap, filepath.Join(dir, fmt.Sprintf("etcdutl-%d", r)), peerPort,
			[]string{"--bump-revision", strconv.Itoa(job.RestoreRevisionBump), "--mark-compacted"}, nil)
		if err != nil {
			return err
		}
		peerR, peerStart = append(peerR, s), append(peerStart, took)

		ldir := filepath.Join(dir, fmt.Sprintf("lifeboat-%d", r))
		s, _, err = b.run(ctx, nil, lifeboat, "--config", cfg, "restore", "apply", backupID, "--confirm", backupID,
			"--member", "m1="+peer, "--out", ldir, "--signing-key", signing, "--log-level", "warn")
		if err != nil {
			return err
		}
		e, took, err := b.startEtcd(ctx, "m1", filepath.Join(ldir, "m1.etcd"), peerPort)
		if err != nil {
			return fmt.Errorf("start etcd restored by lifeboat: %w", err)
		}
		e.stop()
		os.RemoveAll(ldir)
		lbR, lbStart = append(lbR, s), append(lbStart, took)
	}

	// The drill of the same backup, from fetch to a running scratch etcd
	// (its report's fetch, decrypt, restore etcd and start etcd phases),
	// against etcdutl snapshot restore of etcdctl's file without the
	// revision bump (a drill reads the keyspace at the backup's revision)
	// and the start of etcd on it.
	var drillR, drillPeer []sample
	for r := range b.runs {
		peerPort, err := freePort()
		if err != nil {
			return err
		}
		// The scratch etcd's election settings (a single member on
		// loopback leads within ~100 ms), so both starts wait alike.
		s, took, err := b.etcdutlRestore(ctx, snap, filepath.Join(dir, fmt.Sprintf("etcdutl-plain-%d", r)), peerPort,
			nil, []string{"--heartbeat-interval", "10", "--election-timeout", "100"})
		if err != nil {
			return err
		}
		s.wall += took
		drillPeer = append(drillPeer, s)

		tmp := filepath.Join(dir, "drill-tmp")
		if err := os.MkdirAll(tmp, 0o700); err != nil {
			return err
		}
		// The bench's keyspace is not a Kubernetes cluster's, so the
		// drill's checks of API objects fail (exit code 5, a missed
		// check); the restore it times is the same.
		s, out, err := b.run(ctx, nil, lifeboat, "--config", cfg, "drill", "run", "bench", "--signing-key", signing,
			"--kube-apiserver", filepath.Join(b.bin, "kube-apiserver"), "--tmp-dir", tmp, "-o", "json", "--log-level", "warn")
		var ee *exec.ExitError
		if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 5) {
			return err
		}
		toEtcd, mem, err := drillToEtcd(out)
		if err != nil {
			return err
		}
		if r == b.runs-1 && len(mem) > 0 {
			b.drillMemory = append(b.drillMemory, fmt.Sprintf("- %s: %s", label, strings.Join(mem, ", ")))
		}
		drillR = append(drillR, sample{wall: toEtcd, rss: s.rss})
	}

	mlb, mctl, mrst := median(lb), median(ctl), median(rst)
	both := median(pairSum(ctl, rst))
	b.ratio(fmt.Sprintf("backup %s: wall (vs etcdctl snapshot save)", label), mlb.wall, mctl.wall, 1.10)
	b.rows = append(b.rows, row{measure: fmt.Sprintf("backup %s: CPU (vs etcdctl snapshot save)", label),
		lifeboat: secs(mlb.cpu), peer: secs(mctl.cpu), ratio: mlb.cpu.Seconds() / mctl.cpu.Seconds(), goal: "—"})
	lbSrc, ctlSrc := slices.Sorted(slices.Values(lbSrcCPU))[len(lbSrcCPU)/2], slices.Sorted(slices.Values(ctlSrcCPU))[len(ctlSrcCPU)/2]
	b.rows = append(b.rows, row{measure: fmt.Sprintf("backup %s: the source etcd's CPU (vs during etcdctl snapshot save)", label),
		lifeboat: secs(lbSrc), peer: secs(ctlSrc), ratio: lbSrc.Seconds() / ctlSrc.Seconds(), goal: "—"})
	b.rows = append(b.rows, row{measure: fmt.Sprintf("backup %s: peak RSS", label), lifeboat: mib(mlb.rss), peer: mib(mctl.rss) + " (etcdctl)",
		ratio: float64(mlb.rss) / float64(mctl.rss), goal: "≤ 128 MiB", pass: mlb.rss <= 128<<20, hasVerdict: true})
	b.ratio(fmt.Sprintf("backup %s: wall (vs etcdctl + restic backup)", label), mlb.wall, both.wall, 0.50)
	b.floors = append(b.floors, backupFloors(label, mlb, mctl, both, lbSrcCPU[medianIndex(lb)], runtime.NumCPU()))
	b.rows = append(b.rows, row{measure: fmt.Sprintf("backup %s: stored bytes (vs restic)", label), lifeboat: mb(lbStored), peer: mb(resticStored) + fmt.Sprintf(" (restic %s)", secs(mrst.wall)),
		ratio: float64(lbStored) / float64(resticStored), ratioDigits: 4, goal: "≤ 1.00", pass: lbStored <= resticStored, hasVerdict: true})
	lbTotal := median(withStart(lbR, lbStart))
	peerTotal := median(withStart(peerR, peerStart))
	b.ratio(fmt.Sprintf("restore %s to a running etcd (vs etcdutl snapshot restore + start)", label), lbTotal.wall, peerTotal.wall, 1.50)
	b.rows = append(b.rows, row{measure: fmt.Sprintf("restore %s: peak RSS", label), lifeboat: mib(median(lbR).rss), peer: mib(median(peerR).rss) + " (etcdutl)",
		ratio: float64(median(lbR).rss) / float64(median(peerR).rss), goal: "—"})
	b.ratio(fmt.Sprintf("drill %s: fetch to a running scratch etcd (vs etcdutl snapshot restore + start)", label), median(drillR).wall, median(drillPeer).wall, 1.50)
	return nil
}

// backupFloors states, for one size, the CPU floor of the backup's median
// run: in that run the member and lifeboat shared the machine's cores, so
// its wall time could not be less than their CPU time together (lbSrc, the
// member's CPU in the same run) over the cores. A wall time near the floor
// means little core time was left idle; only less CPU would then make that
// run faster. (With a CPU quota below the cores, the floor is lower than
// what the quota allows.) And where half of etcdctl + restic is less than
// etcdctl's own time, that goal asks lifeboat to finish a backup of the same
// data, from the same member, sooner than etcdctl alone saves a snapshot.
func backupFloors(label string, lb, ctl, both sample, lbSrc time.Duration, cores int) string {
	shared := (lb.cpu + lbSrc) / time.Duration(cores)
	line := fmt.Sprintf("- %s: lifeboat took %s; in that run its CPU and the member's (%s + %s) over %d cores take at least %s",
		label, secs(lb.wall), secs(lb.cpu), secs(lbSrc), cores, secs(shared))
	if goal := both.wall / 2; goal < ctl.wall {
		line += fmt.Sprintf(". The goal against etcdctl + restic (%s) is less than etcdctl's own time to save a snapshot of the same data (%s)", secs(goal), secs(ctl.wall))
	}
	return line + "."
}

// etcdutlRestore is the peer's restore: etcdutl snapshot restore of snap
// into dataDir as member m1 (restoreArgs added), then etcd started on it
// (startArgs added) until it answers, stopped and removed. It returns the
// restore's sample and the start's time.
func (b *bench) etcdutlRestore(ctx context.Context, snap, dataDir string, peerPort int, restoreArgs, startArgs []string) (sample, time.Duration, error) {
	peer := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
	args := append([]string{"snapshot", "restore", snap, "--data-dir", dataDir,
		"--name", "m1", "--initial-cluster", "m1=" + peer, "--initial-advertise-peer-urls", peer}, restoreArgs...)
	s, _, err := b.run(ctx, nil, filepath.Join(b.bin, "etcdutl"), args...)
	if err != nil {
		return s, 0, err
	}
	defer os.RemoveAll(dataDir)
	e, took, err := b.startEtcd(ctx, "m1", dataDir, peerPort, startArgs...)
	if err != nil {
		return s, 0, fmt.Errorf("start etcd restored by etcdutl: %w", err)
	}
	e.stop()
	return s, took, nil
}

func pairSum(a, b []sample) []sample {
	out := make([]sample, len(a))
	for i := range a {
		out[i] = a[i].add(b[i])
	}
	return out
}

func withStart(ss []sample, starts []time.Duration) []sample {
	out := make([]sample, len(ss))
	for i := range ss {
		out[i] = ss[i]
		out[i].wall += starts[i]
	}
	return out
}

func (b *bench) ratio(measure string, lb, peer time.Duration, goal float64) {
	r := lb.Seconds() / peer.Seconds()
	b.rows = append(b.rows, row{measure: measure, lifeboat: secs(lb), peer: secs(peer), ratio: r,
		goal: fmt.Sprintf("≤ %.2f", goal), pass: r <= goal, hasVerdict: true})
}

// procCPU returns a process's CPU time so far (user + system), from
// /proc/<pid>/stat; 0 if it cannot be read.
func procCPU(pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses.
	i := strings.LastIndexByte(string(data), ')')
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

// drillToEtcd reads the report `drill run -o json` printed and returns the
// sum of its fetch, decrypt, restore etcd and start etcd phases, each of
// which must have succeeded: the restore to a running etcd, before the
// control plane and the checks.
// drillToEtcd reads a drill's JSON output: the sum of its fetch, decrypt,
// restore etcd and start etcd phases, and each phase's peak memory as
// "name size" (docs/format.md §5.6).
func drillToEtcd(out []byte) (time.Duration, []string, error) {
	i := bytes.Index(out, []byte("\n{"))
	if i < 0 {
		return 0, nil, fmt.Errorf("drill run printed no JSON:\n%s", tail(out))
	}
	var v struct {
		Report struct {
			Phases []struct {
				Name            string `json:"name"`
				DurationMs      int64  `json:"durationMs"`
				Outcome         string `json:"outcome"`
				PeakMemoryBytes int64  `json:"peakMemoryBytes"`
			} `json:"phases"`
		} `json:"report"`
	}
	if err := json.NewDecoder(bytes.NewReader(out[i+1:])).Decode(&v); err != nil {
		return 0, nil, fmt.Errorf("drill run's JSON: %w", err)
	}
	var ms int64
	seen := 0
	var mem []string
	for _, p := range v.Report.Phases {
		if p.PeakMemoryBytes > 0 {
			mem = append(mem, p.Name+" "+memText(p.PeakMemoryBytes))
		}
		switch p.Name {
		case "fetch", "decrypt", "restore etcd", "start etcd":
			if p.Outcome != "success" {
				return 0, nil, fmt.Errorf("drill phase %s: %s", p.Name, p.Outcome)
			}
			ms += p.DurationMs
			seen++
		}
	}
	if seen != 4 {
		return 0, nil, fmt.Errorf("drill report has %d of the phases fetch, decrypt, restore etcd and start etcd", seen)
	}
	return time.Duration(ms) * time.Millisecond, mem, nil
}

// memText writes a byte count as MiB, or GiB with one decimal from 1 GiB.
func memText(n int64) string {
	if n >= 1<<30 {
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	}
	return fmt.Sprintf("%d MiB", n>>20)
}
