package vault

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/vault/api"

	keysvault "github.com/lifeboat-dr/lifeboat/internal/keys/vault"
	"github.com/lifeboat-dr/lifeboat/internal/scratch"
)

// TransitMount is where Start mounts the transit engine.
const TransitMount = "transit"

// caFileName is the CA certificate `vault server -dev-tls` writes into
// its -dev-tls-cert-dir.
const caFileName = "vault-ca.pem"

// Options say how to start a scratch Vault.
type Options struct {
	// Binary is the vault binary (see Locate). Required.
	Binary string
	// TempDir is where the server's private directory is made; empty means
	// the system's temporary directory.
	TempDir string
	// StartTimeout bounds waiting for the server; zero means 60s.
	StartTimeout time.Duration
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
}

// Server is a running scratch Vault.
type Server struct {
	addr    string
	dir     string
	caFile  string
	token   string
	cmd     *exec.Cmd
	client  *api.Client
	log     *slog.Logger
	out     *outputBuffer
	exited  <-chan struct{}
	waitErr error

	stopOnce sync.Once
	stopErr  error
}

// Start starts a Vault dev server and mounts transit at TransitMount.
//
// The server serves TLS with a certificate from a CA it generates into a
// directory only this user can read (-dev-tls), and the client trusts that
// CA alone, so no other process that took the port first can receive the
// root token or a key. The root token goes to the server in its
// environment (VAULT_DEV_ROOT_TOKEN_ID), never on its command line.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.Binary == "" {
		return nil, fmt.Errorf("scratch vault: %w: no binary given", ErrNoVault)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	timeout := opts.StartTimeout
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	// MkdirTemp makes the directory 0700.
	dir, err := os.MkdirTemp(opts.TempDir, "lifeboat-vault-")
	if err != nil {
		return nil, fmt.Errorf("scratch vault: temporary directory: %w", err)
	}
	tlsDir := filepath.Join(dir, "tls")
	if err := os.Mkdir(tlsDir, 0o700); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("scratch vault: TLS directory: %w", err)
	}
	port, err := freePortPair()
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("scratch vault: %w", err)
	}
	var tok [24]byte
	if _, err := rand.Read(tok[:]); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("scratch vault: root token: %w", err)
	}
	token := "lifeboat-scratch-" + hex.EncodeToString(tok[:])
	listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s := &Server{addr: "https://" + listen, dir: dir, caFile: filepath.Join(tlsDir, caFileName), token: token,
		log: log.With("scratchVault", listen), out: &outputBuffer{redact: token}}
	s.cmd = exec.Command(opts.Binary, "server", "-dev",
		"-dev-listen-address="+listen,
		"-dev-tls",
		"-dev-tls-cert-dir="+tlsDir,
		"-dev-no-store-token",
	)
	s.cmd.Dir = dir
	// No inherited VAULT_* settings, HOME in the private directory. The
	// root token is passed here rather than as -dev-root-token-id: any
	// local user can read /proc/<pid>/cmdline, only the owner environ.
	s.cmd.Env = []string{"HOME=" + dir, "TMPDIR=" + dir, "PATH=/usr/bin:/bin", "VAULT_DEV_ROOT_TOKEN_ID=" + token}
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	s.cmd.SysProcAttr = scratch.ChildProcAttr()
	exited, err := scratch.StartChild(s.cmd, func(err error) { s.waitErr = err })
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("scratch vault: start %s: %w", opts.Binary, err)
	}
	s.exited = exited
	s.log.Info("scratch vault started", "pid", s.cmd.Process.Pid, "dir", dir)
	fail := func(err error) (*Server, error) {
		s.Stop()
		return nil, fmt.Errorf("scratch vault at %s: %w", s.addr, err)
	}
	if err := s.waitReady(ctx, timeout); err != nil {
		return fail(err)
	}
	if err := s.client.Sys().MountWithContext(ctx, TransitMount, &api.MountInput{Type: "transit"}); err != nil {
		return fail(fmt.Errorf("mount transit: %w", err))
	}
	return s, nil
}

// Address returns the server's URL.
func (s *Server) Address() string { return s.addr }

// Client returns an API client holding the server's root token.
func (s *Server) Client() *api.Client { return s.client }

// waitReady waits for the server's CA certificate, then builds the client
// that trusts only it, then polls sys/health (with no token) until the
// server answers 200.
func (s *Server) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var (
		hc   *http.Client
		last error
	)
	for {
		if hc == nil {
			var err error
			if hc, err = s.trustedClient(); err != nil {
				last = err
			} else if s.client, err = keysvault.NewAPIClient(s.addr, hc); err != nil {
				return err
			} else {
				s.client.SetToken(s.token)
			}
		}
		if hc != nil {
			rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
			req, _ := http.NewRequestWithContext(rctx, http.MethodGet, s.addr+"/v1/sys/health", nil)
			resp, err := hc.Do(req)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					rcancel()
					return nil
				}
				err = fmt.Errorf("sys/health answered %s", resp.Status)
			}
			rcancel()
			last = err
		}
		select {
		case <-s.exited:
			return fmt.Errorf("the server exited (%v) before it was ready; its output (redacted):\n%s", s.waitErr, s.out.tail())
		case <-ctx.Done():
			return fmt.Errorf("not ready: %w (last: %v); its output (redacted):\n%s", ctx.Err(), last, s.out.tail())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// trustedClient reads the CA the server generated into its private
// directory and returns an HTTP client for it.
func (s *Server) trustedClient() (*http.Client, error) {
	pemCA, err := os.ReadFile(s.caFile)
	if err != nil {
		return nil, fmt.Errorf("no TLS CA yet: %w", err)
	}
	return tlsClient(pemCA)
}

// tlsClient returns an HTTP client that trusts only the CA certificates of
// pemCA (no system roots), verifies the server's certificate, uses no
// proxy and follows no redirects.
func tlsClient(pemCA []byte) (*http.Client, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemCA) {
		return nil, errors.New("the TLS CA file holds no certificate (yet)")
	}
	return &http.Client{
		Transport: &http.Transport{
			TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
			Proxy:               nil,
			ForceAttemptHTTP2:   true,
			MaxIdleConns:        4,
			IdleConnTimeout:     30 * time.Second,
			TLSHandshakeTimeout: 10 * time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, nil
}

// Stop kills the server and removes its directory. It may be called more
// than once.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		if s.cmd != nil && s.cmd.Process != nil {
			select {
			case <-s.exited:
			default:
				scratch.SignalGroup(s.cmd, syscall.SIGTERM)
				select {
				case <-s.exited:
				case <-time.After(5 * time.Second):
					scratch.SignalGroup(s.cmd, syscall.SIGKILL)
					<-s.exited
				}
			}
		}
		if err := os.RemoveAll(s.dir); err != nil {
			s.stopErr = fmt.Errorf("scratch vault: remove %s: %w", s.dir, err)
		}
		s.log.Info("scratch vault stopped")
	})
	return s.stopErr
}

// freePortPair returns a loopback port p such that p and p+1 (dev mode's
// cluster listener) were free a moment ago.
func freePortPair() (int, error) {
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("find a free port: %w", err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l2, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p+1)))
		l.Close()
		if err == nil {
			l2.Close()
			return p, nil
		}
	}
	return 0, errors.New("find a free port: no two consecutive free ports on 127.0.0.1")
}

// outputBuffer keeps the last 64 KiB of the server's output in memory.
type outputBuffer struct {
	mu     sync.Mutex
	buf    []byte
	redact string
}

func (o *outputBuffer) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.buf = append(o.buf, p...)
	if n := len(o.buf) - 64<<10; n > 0 {
		o.buf = o.buf[n:]
	}
	return len(p), nil
}

// tail returns the last lines of output with the token and the dev
// server's unseal key and root token lines removed.
func (o *outputBuffer) tail() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var lines []string
	for _, l := range strings.Split(string(bytes.ReplaceAll(o.buf, []byte(o.redact), []byte("<redacted>"))), "\n") {
		if strings.Contains(l, "Unseal Key") || strings.Contains(l, "Root Token") || strings.Contains(l, "VAULT_TOKEN") {
			continue
		}
		lines = append(lines, l)
	}
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return strings.Join(lines, "\n")
}
