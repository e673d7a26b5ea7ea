package vault

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/testenv"
)

func TestLocate(t *testing.T) {
	bin := testenv.Binary(t, "vault")
	_, err := Locate(func(string) string { return "" }, filepath.Join(t.TempDir(), "lifeboat"))
	if !errors.Is(err, ErrNoVault) || !strings.Contains(err.Error(), "make testbin") {
		t.Errorf("missing binary: %v", err)
	}
	if _, err := Locate(func(string) string { return "" }, ""); !errors.Is(err, ErrNoVault) {
		t.Errorf("unknown executable: %v", err)
	}
	if _, err := Locate(func(k string) string { return map[string]string{EnvVault: t.TempDir()}[k] }, ""); !errors.Is(err, ErrNoVault) || !strings.Contains(err.Error(), "is a directory") {
		t.Errorf("$%s a directory: %v", EnvVault, err)
	}
	if got, err := Locate(func(k string) string { return map[string]string{EnvVault: bin}[k] }, ""); err != nil || got != bin {
		t.Errorf("$%s: %q %v", EnvVault, got, err)
	}
	if got, err := Locate(func(string) string { return "" }, filepath.Join(filepath.Dir(bin), "lifeboat")); err != nil || got != bin {
		t.Errorf("beside lifeboat: %q %v", got, err)
	}
}

// TestServer starts a scratch Vault, checks that transit is mounted, that
// the environment's VAULT_* and proxy settings do not reach it or its
// client, that its root token is not on its command line, that its client
// refuses a TLS server without its generated CA, and that Stop kills it
// and removes its directory.
func TestServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	t.Setenv("VAULT_TOKEN", "from-the-environment")
	t.Setenv("VAULT_ADDR", "http://127.0.0.1:1")
	// Neither may weaken the client: it verifies the server against the
	// generated CA and uses no proxy.
	t.Setenv("VAULT_SKIP_VERIFY", "true")
	t.Setenv("HTTPS_PROXY", "http://127.0.0.1:1")
	tmp := t.TempDir()
	s, err := Start(ctx, Options{Binary: testenv.Binary(t, "vault"), TempDir: tmp})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	if !strings.HasPrefix(s.Address(), "https://127.0.0.1:") {
		t.Errorf("address %s", s.Address())
	}
	// The root token is not on the command line, which any local user can
	// read.
	pid := s.cmd.Process.Pid
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(cmdline, []byte(s.Client().Token())) || !bytes.Contains(cmdline, []byte("-dev-tls")) {
		t.Errorf("command line %q", bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}))
	}
	// The client trusts only the server's generated CA: a TLS server with a
	// certificate for 127.0.0.1 from another CA is refused before any
	// request (and so the token) is sent.
	var gotToken atomic.Bool
	impostor := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotToken.Store(r.Header.Get("X-Vault-Token") != "")
	}))
	defer impostor.Close()
	ic := s.Client().CloneConfig()
	tr, ok := ic.HttpClient.Transport.(*http.Transport)
	if !ok || tr.Proxy != nil || tr.TLSClientConfig == nil || tr.TLSClientConfig.InsecureSkipVerify || tr.TLSClientConfig.RootCAs == nil {
		t.Fatalf("transport %+v", ic.HttpClient.Transport)
	}
	other, err := s.Client().Clone()
	if err != nil {
		t.Fatal(err)
	}
	other.SetToken(s.Client().Token())
	if err := other.SetAddress(impostor.URL); err != nil {
		t.Fatal(err)
	}
	_, err = other.Logical().ReadWithContext(ctx, "transit/keys/x")
	var ua x509.UnknownAuthorityError
	if !errors.As(err, &ua) || gotToken.Load() {
		t.Errorf("impostor: err %v, token sent %v", err, gotToken.Load())
	}
	mounts, err := s.Client().Sys().ListMountsWithContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m, ok := mounts[TransitMount+"/"]; !ok || m.Type != "transit" {
		t.Errorf("mounts: %v", mounts)
	}
	if s.Client().Token() == "from-the-environment" {
		t.Error("the client took VAULT_TOKEN")
	}
	if tail := s.out.tail(); strings.Contains(tail, s.Client().Token()) || strings.Contains(tail, "Root Token") {
		t.Error("the output tail holds the root token")
	}
	ents, _ := os.ReadDir(tmp)
	if len(ents) != 1 {
		t.Fatalf("temp dir holds %d entries", len(ents))
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
		t.Errorf("Stop left %v", ents)
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Errorf("process %d still alive after Stop", pid)
	}
	if err := s.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

// TestStartFails reports a binary that is not Vault, without hanging.
func TestStartFails(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := Start(ctx, Options{Binary: "/bin/false", TempDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "exited") {
		t.Fatalf("err %v", err)
	}
}

// TestTLSClient trusts the CA it is given and no other, system roots
// included.
func TestTLSClient(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	other := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer other.Close()
	pemOf := func(s *httptest.Server) []byte {
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw})
	}
	hc, err := tlsClient(pemOf(srv))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Get(srv.URL)
	if err != nil {
		t.Fatalf("trusted server: %v", err)
	}
	resp.Body.Close()
	// httptest's servers share one certificate; make one from another CA.
	hc2, err := tlsClient(pemOf(otherCA(t)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hc2.Get(srv.URL); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("untrusted server: %v", err)
	}
	if _, err := tlsClient([]byte("not a certificate")); err == nil {
		t.Error("no CA accepted")
	}
}

// otherCA returns a TLS server whose certificate is not httptest's.
func otherCA(t *testing.T) *httptest.Server {
	t.Helper()
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	cert, err := selfSigned()
	if err != nil {
		t.Fatal(err)
	}
	s.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "other"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// TestServerOutlivesStartingThread starts the server from a goroutine
// locked to its thread that then exits, which ends the thread: the
// parent-death signal (sent when the forking thread exits) must not kill
// the server.
func TestServerOutlivesStartingThread(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bin := testenv.Binary(t, "vault")
	type result struct {
		s   *Server
		tid int
		err error
	}
	var r result
	release := make(chan struct{})
	defer close(release)
	for range 20 {
		ch := make(chan result, 1)
		go func() {
			runtime.LockOSThread()
			tid := syscall.Gettid()
			if tid == os.Getpid() {
				// The main thread is never ended: keep it busy and try
				// another.
				ch <- result{tid: -1}
				<-release
				runtime.UnlockOSThread()
				return
			}
			// Exiting while locked makes the runtime end this thread.
			s, err := Start(ctx, Options{Binary: bin, TempDir: t.TempDir()})
			ch <- result{s, tid, err}
		}()
		if r = <-ch; r.tid != -1 {
			break
		}
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.s == nil {
		// The main thread is held by the first such goroutine, so every
		// later one runs on another thread; 20 in a row cannot miss.
		t.Fatal("no goroutine ran off the main thread in 20 tries")
	}
	defer r.s.Stop()
	// Wait until the starting thread is gone.
	for i := 0; ; i++ {
		if _, err := os.Stat(fmt.Sprintf("/proc/self/task/%d", r.tid)); errors.Is(err, os.ErrNotExist) {
			break
		}
		if i == 50 {
			t.Fatalf("thread %d did not end", r.tid)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	select {
	case <-r.s.exited:
		t.Fatalf("the server died with the thread that started it: %v", r.s.waitErr)
	default:
	}
	if _, err := r.s.Client().Sys().HealthWithContext(ctx); err != nil {
		t.Fatalf("health after the starting thread ended: %v", err)
	}
}
