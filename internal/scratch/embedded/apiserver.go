package embedded

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/scratch"
)

// apiserver is a running kube-apiserver process.
type apiserver struct {
	cmd  *exec.Cmd
	done <-chan struct{} // closed when the process has exited
	log  *tailBuffer
	file *os.File
}

// apiserverFiles are the files the apiserver is started with.
type apiserverFiles struct {
	certDir, saKey, saPub, tokens string
}

// writeAPIServerFiles writes new service-account signing keys and the
// static token file granting token to user admin in system:masters.
func writeAPIServerFiles(f apiserverFiles, token string) error {
	if err := mkdir(f.certDir); err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("service-account key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("service-account key: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return fmt.Errorf("service-account key: %w", err)
	}
	if err := os.WriteFile(f.saKey, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(f.saPub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(f.tokens, []byte(token+",admin,admin,system:masters\n"), 0o600)
}

// etcdClient is how kube-apiserver reaches etcd: its client URL, the CA
// that verifies etcd's certificate and the client certificate and key.
type etcdClient struct {
	url, caFile, certFile, keyFile string
}

// apiserverArgs are the kube-apiserver flags of a scratch cluster.
func apiserverArgs(etcd etcdClient, prefix string, port int, f apiserverFiles, encryptionConfig, serviceRange string) []string {
	args := []string{
		"--etcd-servers=" + etcd.url,
		"--etcd-cafile=" + etcd.caFile,
		"--etcd-certfile=" + etcd.certFile,
		"--etcd-keyfile=" + etcd.keyFile,
		"--etcd-prefix=" + prefix,
		// The drill reads the keyspace at the backup's revision; the
		// apiserver must not compact it away meanwhile.
		"--etcd-compaction-interval=0",
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + f.certDir,
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + f.saPub,
		"--service-account-signing-key-file=" + f.saKey,
		"--service-cluster-ip-range=" + serviceRange,
		"--authorization-mode=RBAC",
		"--anonymous-auth=false",
		"--token-auth-file=" + f.tokens,
		"--enable-priority-and-fairness=false",
		// Nothing runs pods here, and a restored cluster's controllers are
		// not running to make ServiceAccounts.
		"--disable-admission-plugins=ServiceAccount",
		// 127.0.0.1 is not a valid endpoint for the "kubernetes" Service;
		// without a reconciler the apiserver does not rewrite it.
		"--endpoint-reconciler-type=none",
		"--profiling=false",
		"--v=1",
	}
	if encryptionConfig != "" {
		args = append(args, "--encryption-provider-config="+encryptionConfig)
	}
	return args
}

// startAPIServer starts bin with args in dir, logging to logPath.
func startAPIServer(bin string, args []string, dir, logPath string) (*apiserver, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	tail := &tailBuffer{max: 64 << 10}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + dir, "TMPDIR=" + dir}
	w := io.MultiWriter(f, tail)
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = scratch.ChildProcAttr()
	a := &apiserver{cmd: cmd, log: tail, file: f}
	done, err := scratch.StartChild(cmd, nil)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	a.done = done
	return a, nil
}

// stop terminates the apiserver (SIGTERM, SIGKILL after grace) and waits.
func (a *apiserver) stop(grace time.Duration) {
	select {
	case <-a.done:
	default:
		scratch.SignalGroup(a.cmd, syscall.SIGTERM)
		select {
		case <-a.done:
		case <-time.After(grace):
			scratch.SignalGroup(a.cmd, syscall.SIGKILL)
			<-a.done
		}
	}
	a.file.Close()
}

// exited describes how the process ended, for errors.
func (a *apiserver) exited() string {
	if st := a.cmd.ProcessState; st != nil {
		return st.String()
	}
	return "exited"
}

// waitReady polls GET /readyz until it answers 200, the process exits, ctx
// ends or timeout passes. The client is built once the apiserver has
// written its serving certificate.
func waitReady(ctx context.Context, a *apiserver, server, caFile, token string, timeout time.Duration) (*http.Client, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var (
		client *http.Client
		ca     []byte
		last   error = errors.New("not started")
	)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-a.done:
			return nil, nil, fmt.Errorf("kube-apiserver %s while starting; last log lines:\n%s", a.exited(), a.log.lastLines(20))
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return nil, nil, fmt.Errorf("kube-apiserver not ready after %s: %v; last log lines:\n%s", timeout, last, a.log.lastLines(20))
			}
			return nil, nil, ctx.Err()
		case <-tick.C:
		}
		if client == nil {
			pemCerts, err := os.ReadFile(caFile)
			if err != nil {
				last = fmt.Errorf("no serving certificate yet: %w", err)
				continue
			}
			c, err := newClient(pemCerts, token)
			if err != nil {
				last = err
				continue
			}
			client, ca = c, pemCerts
		}
		last = getReady(ctx, client, server+"/readyz")
		if last == nil {
			return client, ca, nil
		}
	}
}

func getReady(ctx context.Context, client *http.Client, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /readyz: %s", resp.Status)
	}
	return nil
}

// newClient returns an HTTP client that trusts the PEM certificates and
// sends token as a bearer token.
func newClient(pemCerts []byte, token string) (*http.Client, error) {
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pemCerts) {
		return nil, errors.New("no certificates in the apiserver's serving certificate file")
	}
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:   true,
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConnsPerHost: 8,
	}
	return &http.Client{Transport: &bearer{token: token, next: tr}, Timeout: 2 * time.Minute}, nil
}

// bearer adds an Authorization: Bearer header to each request.
type bearer struct {
	token string
	next  http.RoundTripper
}

func (b *bearer) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(req)
}

// randomToken returns 32 random bytes in hex.
func randomToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// kubeconfig returns a kubeconfig for server with the CA inline and token.
func kubeconfig(name, server string, ca []byte, token string) []byte {
	// strconv.Quote gives a JSON string, which is a YAML string too.
	return []byte(`apiVersion: v1
kind: Config
clusters:
  - name: ` + name + `
    cluster:
      server: ` + strconv.Quote(server) + `
      certificate-authority-data: ` + base64.StdEncoding.EncodeToString(ca) + `
users:
  - name: ` + name + `-admin
    user:
      token: ` + strconv.Quote(token) + `
contexts:
  - name: ` + name + `
    context:
      cluster: ` + name + `
      user: ` + name + `-admin
current-context: ` + name + `
`)
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = append([]byte(nil), t.buf[len(t.buf)-t.max:]...)
	}
	return len(p), nil
}

// lastLines returns the last n lines written.
func (t *tailBuffer) lastLines(n int) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := strings.Split(strings.TrimRight(string(t.buf), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
