package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/scratch"
)

// startTimeout bounds how long a server may take to become ready.
const startTimeout = 90 * time.Second

// Binary returns the path of bin/<name>, failing the test with the command
// that builds it when it is missing.
func Binary(t testing.TB, name string) string {
	t.Helper()
	dir := os.Getenv("LIFEBOAT_TESTBIN")
	if dir == "" {
		root, err := moduleRoot()
		if err != nil {
			t.Fatalf("testenv: %v", err)
		}
		dir = filepath.Join(root, "bin")
	}
	p := filepath.Join(dir, name)
	if st, err := os.Stat(p); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		t.Fatalf("testenv: server binary %s is missing; build it with `make testbin` (or `make %s`) at the repository root", p, filepath.Join("bin", name))
	}
	return p
}

// moduleRoot finds the directory holding lifeboat's go.mod, walking up
// from the working directory (a test runs in its package's directory).
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && bytes.HasPrefix(b, []byte("module github.com/lifeboat-dr/lifeboat\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("cannot find lifeboat's go.mod above the working directory")
		}
		dir = parent
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Process is a server started for a test.
type Process struct {
	Name string
	t    testing.TB
	bin  string
	args []string
	env  []string
	dir  string
	log  *logBuffer

	mu   sync.Mutex
	cmd  *exec.Cmd
	done <-chan struct{}
}

// logBuffer keeps the last maxLog bytes a server wrote.
type logBuffer struct {
	mu  sync.Mutex
	buf []byte
}

const maxLog = 256 << 10

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	if len(l.buf) > maxLog {
		l.buf = append([]byte(nil), l.buf[len(l.buf)-maxLog:]...)
	}
	return len(p), nil
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.buf)
}

// startProcess starts bin with args and env (added to a minimal
// environment) in dir, and stops it when the test ends. ready is polled
// until it returns nil.
func startProcess(t testing.TB, name, bin string, args, env []string, dir string, ready func(context.Context) error) *Process {
	t.Helper()
	p := &Process{Name: name, t: t, bin: bin, args: args, env: env, dir: dir, log: &logBuffer{}}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("testenv: %s log (last %d KiB):\n%s", name, maxLog>>10, p.log.String())
		}
	})
	if err := p.start(ready); err != nil {
		t.Fatalf("testenv: start %s: %v\n%s log:\n%s", name, err, name, p.log.String())
	}
	return p
}

func (p *Process) start(ready func(context.Context) error) error {
	p.mu.Lock()
	cmd := exec.Command(p.bin, p.args...)
	cmd.Dir = p.dir
	cmd.Env = append([]string{"PATH=/usr/bin:/bin", "HOME=" + p.dir, "TMPDIR=" + p.dir}, p.env...)
	cmd.Stdout = p.log
	cmd.Stderr = p.log
	// Its own process group, so Stop reaches any children, and a parent
	// death signal so a killed test does not leave servers behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// Started from a thread of its own, as the scratch servers are: the
	// parent-death signal follows the thread that started the child.
	done, err := scratch.StartChild(cmd, nil)
	if err != nil {
		p.mu.Unlock()
		return err
	}
	p.cmd, p.done = cmd, done
	p.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	var last error
	for {
		select {
		case <-done:
			return fmt.Errorf("%s exited during start-up: %v", p.Name, cmd.ProcessState)
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after %s: %v", p.Name, startTimeout, last)
		case <-time.After(50 * time.Millisecond):
		}
		rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
		last = ready(rctx)
		rcancel()
		if last == nil {
			return nil
		}
	}
}

// Stop terminates the server (SIGTERM, then SIGKILL after 10s) and waits
// for it. Stopping a stopped server does nothing.
func (p *Process) Stop() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

// Kill stops the server at once with SIGKILL, as a crash would.
func (p *Process) Kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-done
}

// Restart starts a stopped server again with the same arguments, data and
// ports.
func (p *Process) Restart(ready func(context.Context) error) {
	p.t.Helper()
	p.Stop()
	if err := p.start(ready); err != nil {
		p.t.Fatalf("testenv: restart %s: %v", p.Name, err)
	}
}

// Log returns what the server has written so far (the last 256 KiB).
func (p *Process) Log() string { return p.log.String() }

// httpReady returns a readiness probe that wants status 200 from url.
func httpReady(client *http.Client, url string, header http.Header) func(context.Context) error {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		for k, v := range header {
			req.Header[k] = v
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return nil
	}
}

// tcpReady returns a probe that wants a TCP connection to addr.
func tcpReady(addr string) func(context.Context) error {
	return func(ctx context.Context) error {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	}
}

func addr(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// tempDir returns a new directory under the test's temporary directory.
func tempDir(t testing.TB, name string) string {
	t.Helper()
	d := filepath.Join(t.TempDir(), name)
	if err := os.MkdirAll(d, 0o700); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return d
}
