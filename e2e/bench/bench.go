package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// sample is one process run: wall time, CPU time (user + system) and the
// peak resident set of the process.
type sample struct {
	wall, cpu time.Duration
	rss       int64
}

func (s sample) add(o sample) sample {
	return sample{wall: s.wall + o.wall, cpu: s.cpu + o.cpu, rss: max(s.rss, o.rss)}
}

// median returns the sample with the median wall time.
func median(ss []sample) sample { return ss[medianIndex(ss)] }

// medianIndex returns the index of the run of median wall time.
func medianIndex(ss []sample) int {
	idx := make([]int, len(ss))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return int(ss[a].wall - ss[b].wall) })
	return idx[len(idx)/2]
}

type row struct {
	measure          string
	lifeboat, peer   string
	ratio            float64
	ratioDigits      int // decimals of the ratio; 0 means 2
	goal             string
	pass, hasVerdict bool
}

type bench struct {
	// drillMemory has a line per size: each phase's peak memory in the
	// last drill's signed report.
	drillMemory []string
	// floors has a line per size: the CPU floor of the backup's median run
	// (see backupFloors).
	floors     []string
	bin, dir   string
	runs       int
	profileDir string
	keep       bool
	rows       []row
	restic     string
}

func (b *bench) tools() error {
	for _, t := range []string{"etcd", "etcdctl", "etcdutl", "lifeboat", "kube-apiserver"} {
		if _, err := os.Stat(filepath.Join(b.bin, t)); err != nil {
			return fmt.Errorf("%s is missing from %s: run make testbin build", t, b.bin)
		}
	}
	p, err := exec.LookPath("restic")
	if err != nil {
		return errors.New("restic is missing: make bench installs it (apt-get install restic)")
	}
	b.restic = p
	return nil
}

func (b *bench) failed() bool {
	for _, r := range b.rows {
		if r.hasVerdict && !r.pass {
			return true
		}
	}
	return false
}

// run runs a command and measures it; its output is kept for errors.
func (b *bench) run(ctx context.Context, env []string, name string, args ...string) (sample, []byte, error) {
	fmt.Fprintf(os.Stderr, "  %s %s\n", filepath.Base(name), strings.Join(args[:min(len(args), 4)], " "))
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = nil
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// Every command starts with nothing left dirty by the one before it:
	// otherwise a command that writes little pays for the write-back of
	// one that wrote much (etcdctl's file, restic's repository), on the
	// disk and in its own fsyncs.
	syscall.Sync()
	t0 := time.Now()
	err := cmd.Run()
	s := sample{wall: time.Since(t0)}
	if ps := cmd.ProcessState; ps != nil {
		if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
			s.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
			s.rss = ru.Maxrss * 1024
		}
	}
	if err != nil {
		return s, out.Bytes(), fmt.Errorf("%s %s: %w\n%s", filepath.Base(name), strings.Join(args, " "), err, tail(out.Bytes()))
	}
	return s, out.Bytes(), nil
}

func tail(b []byte) string {
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// etcd is a running etcd server.
type etcd struct {
	cmd      *exec.Cmd
	endpoint string
	done     chan error
	once     sync.Once
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startEtcd starts etcd on dataDir (restored or new) and returns once it
// answers, with the time that took.
func (b *bench) startEtcd(ctx context.Context, name, dataDir string, peerPort int, extra ...string) (*etcd, time.Duration, error) {
	return b.startEtcdRetry(ctx, name, dataDir, peerPort, 0, extra...)
}

func (b *bench) startEtcdRetry(ctx context.Context, name, dataDir string, peerPort, retries int, extra ...string) (*etcd, time.Duration, error) {
	var cport int
	for cport == 0 || cport == peerPort {
		var err error
		if cport, err = freePort(); err != nil {
			return nil, 0, err
		}
	}
	var err error
	if peerPort == 0 {
		if peerPort, err = freePort(); err != nil {
			return nil, 0, err
		}
	}
	client := fmt.Sprintf("http://127.0.0.1:%d", cport)
	peer := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
	args := append([]string{"--name", name, "--data-dir", dataDir,
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", name + "=" + peer, "--quota-backend-bytes", strconv.Itoa(8 << 30),
		"--log-level", "error"}, extra...)
	cmd := exec.Command(filepath.Join(b.bin, "etcd"), args...)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, 0, err
	}
	e := &etcd{cmd: cmd, endpoint: client, done: make(chan error, 1)}
	go func() { e.done <- cmd.Wait() }()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{client}, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		e.stop()
		return nil, 0, err
	}
	defer cli.Close()
	for {
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := cli.Get(sctx, "health-probe")
		cancel()
		if err == nil {
			return e, time.Since(t0), nil
		}
		select {
		case err := <-e.done:
			if bytes.Contains(logs.Bytes(), []byte("address already in use")) && retries < 3 {
				// Another process took the port freePort found; try others.
				return b.startEtcdRetry(ctx, name, dataDir, peerPort, retries+1, extra...)
			}
			return nil, 0, fmt.Errorf("etcd exited: %v\n%s", err, tail(logs.Bytes()))
		case <-ctx.Done():
			e.stop()
			return nil, 0, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// stop stops etcd; it is safe to call more than once.
func (e *etcd) stop() {
	e.once.Do(func() {
		e.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-e.done:
		case <-time.After(10 * time.Second):
			e.cmd.Process.Kill()
			<-e.done
		}
	})
}

func dirSize(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

func parseSize(s string) (int64, error) {
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}} {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			return n * u.mult, err
		}
	}
	return 0, fmt.Errorf("size %q: want e.g. 256MiB or 2GiB", s)
}

func sizeText(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	}
	return fmt.Sprintf("%d MiB", n>>20)
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }
func mib(n int64) string          { return fmt.Sprintf("%d MiB", n>>20) }
func mb(n int64) string           { return fmt.Sprintf("%.2f MB", float64(n)/1e6) }

func (b *bench) machine() string {
	cpu := "unknown CPU"
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	return fmt.Sprintf("%d cores (%s), %s, %s/%s", runtime.NumCPU(), cpu, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

func jsonField(out []byte, field string) string {
	var m map[string]any
	if i := bytes.IndexByte(out, '{'); i >= 0 {
		json.Unmarshal(out[i:], &m)
	}
	s, _ := m[field].(string)
	return s
}
