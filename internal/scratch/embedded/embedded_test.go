package embedded

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lifeboat-dr/lifeboat/internal/scratch"
	"github.com/lifeboat-dr/lifeboat/internal/testenv"
)

// TestRestoreServesSecrets starts an empty cluster with Secrets encrypted
// at rest, writes a Secret, snapshots etcd, and starts a scratch cluster
// from the snapshot and the encryption config: the Secret is served with
// its data, the phases are timed, and Stop removes the restored data.
func TestRestoreServesSecrets(t *testing.T) {
	bin := testenv.Binary(t, "kube-apiserver")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	encCfg := filepath.Join(dir, "encryption-config.yaml")
	writeEncryptionConfig(t, encCfg)

	var progress []string
	src, err := Start(ctx, Options{
		EncryptionConfigPath: encCfg, WorkDir: filepath.Join(dir, "source"), KubeAPIServerBinary: bin,
		ServiceClusterIPRange: "10.100.0.0/16",
		Progress:              func(p string) { progress = append(progress, p) },
	})
	if err != nil {
		t.Fatalf("start source: %v", err)
	}
	defer src.Stop()
	if got := strings.Join(progress, ","); got != "start etcd,start control plane" {
		t.Errorf("source progress %q", got)
	}
	api := src.Access()
	if err := api.Do(ctx, http.MethodPost, "/api/v1/namespaces", map[string]any{
		"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": "ehr"},
	}, nil); err != nil {
		t.Fatal(err)
	}
	if err := api.Do(ctx, http.MethodPost, "/api/v1/namespaces/ehr/secrets", map[string]any{
		"apiVersion": "v1", "kind": "Secret", "metadata": map[string]any{"name": "db"},
		"stringData": map[string]string{"password": "s3cret"},
	}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(src.Kubeconfig); err != nil {
		t.Fatal(err)
	}

	// The Secret is encrypted in etcd.
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{src.EtcdEndpoint}, TLS: src.EtcdTLS, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	raw, err := cli.Get(ctx, "/registry/secrets/ehr/db")
	if err != nil || len(raw.Kvs) != 1 {
		t.Fatalf("get secret from etcd: %v %v", err, raw)
	}
	if !strings.HasPrefix(string(raw.Kvs[0].Value), "k8s:enc:aescbc:v1:key1:") {
		t.Fatalf("secret is not encrypted at rest: %q", raw.Kvs[0].Value[:20])
	}
	snap := filepath.Join(dir, "etcd.snapshot")
	saveSnapshot(t, ctx, cli, snap)

	var scratchProgress []string
	p := Provider{KubeAPIServerBinary: bin}
	sc, err := p.Start(ctx, scratch.Request{
		SnapshotPath: snap, EncryptionConfigPath: encCfg, WorkDir: filepath.Join(dir, "scratch"),
		Progress: func(p string) { scratchProgress = append(scratchProgress, p) },
	})
	if err != nil {
		t.Fatalf("start scratch: %v", err)
	}
	defer sc.Stop()
	// A restored database may be past etcd's 2 GiB default quota (a source
	// may run up to 8 GiB): the scratch etcd takes writes up to 8 GiB.
	if q := sc.(*Cluster).etcd.Server.Cfg.QuotaBackendBytes; q != 8<<30 {
		t.Errorf("scratch etcd quota %d, want 8 GiB", q)
	}
	if got := strings.Join(scratchProgress, ","); got != "restore etcd,start etcd,start control plane" {
		t.Errorf("scratch progress %q", got)
	}
	for _, ph := range sc.StartPhases() {
		if ph.Duration <= 0 || ph.Err != nil {
			t.Errorf("phase %+v", ph)
		}
		t.Logf("phase %-20s %v", ph.Name, ph.Duration)
	}
	var sec struct {
		Data map[string][]byte `json:"data"`
	}
	acc := sc.Access()
	if err := acc.Do(ctx, http.MethodGet, "/api/v1/namespaces/ehr/secrets/db", nil, &sec); err != nil {
		t.Fatalf("restored secret: %v", err)
	}
	if string(sec.Data["password"]) != "s3cret" {
		t.Fatalf("restored secret data %q", sec.Data)
	}
	if cfg, err := os.ReadFile(acc.Kubeconfig); err != nil || !strings.Contains(string(cfg), acc.Server) {
		t.Fatalf("kubeconfig: %v", err)
	}
	ec := sc.(*Cluster)
	if ec.ServiceClusterIPRange != "10.100.0.0/16" {
		t.Errorf("service range %q, want the source's", ec.ServiceClusterIPRange)
	}
	// The restored etcd serves only TLS clients with a certificate; the
	// one in Access reads the restored keyspace.
	if len(acc.EtcdEndpoints) != 1 || !strings.HasPrefix(acc.EtcdEndpoints[0], "https://127.0.0.1:") || acc.EtcdTLS == nil {
		t.Fatalf("etcd access: %v, TLS %v", acc.EtcdEndpoints, acc.EtcdTLS != nil)
	}
	checkEtcdRequiresClientCert(t, ctx, acc.EtcdEndpoints[0], ec.EtcdCAFile, acc.EtcdTLS, "/registry/secrets/ehr/db")
	if err := sc.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "scratch")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("work dir left after Stop: %v", err)
	}
	if err := sc.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}

func TestMissingBinarySaysMakeTestbin(t *testing.T) {
	_, err := Start(context.Background(), Options{WorkDir: t.TempDir(), KubeAPIServerBinary: filepath.Join(t.TempDir(), "kube-apiserver")})
	if !errors.Is(err, ErrNoKubeAPIServer) || !strings.Contains(err.Error(), "make testbin") {
		t.Fatalf("err = %v", err)
	}
	_, err = LocateKubeAPIServer(func(string) string { return "" }, filepath.Join(t.TempDir(), "lifeboat"))
	if !errors.Is(err, ErrNoKubeAPIServer) || !strings.Contains(err.Error(), "make testbin") {
		t.Fatalf("locate: err = %v", err)
	}
	bin := filepath.Join(t.TempDir(), "kube-apiserver")
	os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755)
	if got, err := LocateKubeAPIServer(func(k string) string {
		if k == EnvKubeAPIServer {
			return bin
		}
		return ""
	}, ""); err != nil || got != bin {
		t.Fatalf("locate from env: %q, %v", got, err)
	}
	if got, err := LocateKubeAPIServer(func(string) string { return "" }, filepath.Join(filepath.Dir(bin), "lifeboat")); err != nil || got != bin {
		t.Fatalf("locate beside executable: %q, %v", got, err)
	}
}

func TestBadSnapshotFailsRestorePhase(t *testing.T) {
	bin := testenv.Binary(t, "kube-apiserver")
	dir := t.TempDir()
	snap := filepath.Join(dir, "bad.snapshot")
	os.WriteFile(snap, []byte("not a snapshot"), 0o600)
	_, err := Start(context.Background(), Options{SnapshotPath: snap, WorkDir: filepath.Join(dir, "w"), KubeAPIServerBinary: bin})
	var se *scratch.StartError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "restore etcd") {
		t.Fatalf("err = %v", err)
	}
	if len(se.Phases) != 1 || se.Phases[0].Err == nil {
		t.Fatalf("phases %+v", se.Phases)
	}
	if _, err := os.Stat(filepath.Join(dir, "w")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("work dir left: %v", err)
	}
}

func writeEncryptionConfig(t *testing.T, path string) {
	key := make([]byte, 32)
	rand.Read(key)
	cfg := `apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets]
    providers:
      - aescbc:
          keys:
            - name: key1
              secret: ` + base64.StdEncoding.EncodeToString(key) + `
      - identity: {}
`
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
}

func saveSnapshot(t *testing.T, ctx context.Context, cli *clientv3.Client, path string) {
	rc, err := cli.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, rc); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestEtcdRequiresClientCert starts the scratch etcd alone: it serves TLS
// with a throwaway CA's certificate for 127.0.0.1 and refuses clients
// without a certificate that CA signed, and plain http. Its certificate
// files are private to the user.
func TestEtcdRequiresClientCert(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	now := time.Now()
	pki, err := writeEtcdPKI(filepath.Join(dir, "etcd-pki"), now)
	if err != nil {
		t.Fatal(err)
	}
	clientPort, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	peerPort, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	endpoint, peerURL := localURL("https", clientPort), localURL("https", peerPort)
	e, err := startEtcd(ctx, filepath.Join(dir, "etcd"), endpoint, peerURL, filepath.Join(dir, "etcd.log"), pki, defaultQuota)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	tlsCfg, err := pki.clientTLS()
	if err != nil {
		t.Fatal(err)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, TLS: tlsCfg, DialTimeout: 5 * time.Second, Logger: zapNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.Put(ctx, "/registry/secrets/ehr/db", "phi"); err != nil {
		t.Fatalf("put with the client certificate: %v", err)
	}
	checkEtcdRequiresClientCert(t, ctx, endpoint, pki.CAFile, tlsCfg, "/registry/secrets/ehr/db")

	// The peer port requires a client certificate too.
	u, _ := url.Parse(peerURL)
	if _, err := httpsGet(ctx, tlsCfg, "https://"+u.Host+"/members"); err != nil {
		t.Errorf("peer port refused the client certificate: %v", err)
	}
	if _, err := httpsGet(ctx, noCertTLS(t, pki.CAFile), "https://"+u.Host+"/members"); err == nil {
		t.Errorf("peer port served a client without a certificate")
	} else {
		t.Logf("peer port refused a client without a certificate: %v", err)
	}

	// Files: directory 0700, files 0600, no CA key; ECDSA P-256, a day.
	if st, err := os.Stat(filepath.Join(dir, "etcd-pki")); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("etcd-pki: %v %v", st.Mode(), err)
	}
	entries, err := os.ReadDir(filepath.Join(dir, "etcd-pki"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range entries {
		names = append(names, de.Name())
		info, err := de.Info()
		if err != nil || info.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v %v", de.Name(), info.Mode(), err)
		}
	}
	if got := strings.Join(names, ","); got != "ca.crt,client.crt,client.key,server.crt,server.key" {
		t.Errorf("etcd-pki holds %s", got)
	}
	for _, f := range []string{pki.CAFile, pki.ServerCert, pki.ClientCert} {
		b, _ := os.ReadFile(f)
		blk, _ := pem.Decode(b)
		if blk == nil {
			t.Fatalf("%s: no PEM", f)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if c.PublicKeyAlgorithm != x509.ECDSA || c.NotAfter.Sub(now) > 24*time.Hour+time.Minute || c.NotAfter.Before(now.Add(23*time.Hour)) {
			t.Errorf("%s: %v key, valid until %v", f, c.PublicKeyAlgorithm, c.NotAfter)
		}
	}
}

// checkEtcdRequiresClientCert checks that etcd at endpoint (https) serves
// key to a client with good, and refuses a TLS client that trusts the CA
// but has no certificate, a client that does not trust the CA, and plain
// http, over both gRPC and HTTP.
func checkEtcdRequiresClientCert(t *testing.T, ctx context.Context, endpoint, caFile string, good *tls.Config, key string) {
	t.Helper()
	get := func(tlsCfg *tls.Config, ep string) error {
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, TLS: tlsCfg, DialTimeout: 2 * time.Second, Logger: zapNop()})
		if err != nil {
			return err
		}
		defer cli.Close()
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		resp, err := cli.Get(ctx, key)
		if err == nil && len(resp.Kvs) != 1 {
			t.Errorf("GET %s with a client certificate: %d keys", key, len(resp.Kvs))
		}
		return err
	}
	if err := get(good, endpoint); err != nil {
		t.Fatalf("etcd refused the client certificate: %v", err)
	}
	refused := func(what string, err error) {
		t.Helper()
		if err == nil {
			t.Errorf("etcd served %s", what)
		} else {
			t.Logf("refused %s: %v", what, err)
		}
	}
	refused("a TLS client without a certificate", get(noCertTLS(t, caFile), endpoint))
	refused("a client that does not trust its CA", get(&tls.Config{MinVersion: tls.VersionTLS12}, endpoint))
	plain := "http://" + strings.TrimPrefix(endpoint, "https://")
	refused("plain gRPC", get(nil, plain))

	// The HTTP (gRPC gateway) side.
	if _, err := httpsGet(ctx, good, endpoint+"/version"); err != nil {
		t.Errorf("GET /version with the client certificate: %v", err)
	}
	_, err := httpsGet(ctx, noCertTLS(t, caFile), endpoint+"/version")
	refused("GET /version to a TLS client without a certificate", err)
	_, err = httpsGet(ctx, nil, plain+"/version")
	refused("GET /version over plain http", err)
}

// noCertTLS trusts the CA in caFile and has no client certificate.
func noCertTLS(t *testing.T, caFile string) *tls.Config {
	t.Helper()
	b, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(b) {
		t.Fatal("no CA certificate")
	}
	return &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
}

// httpsGet GETs u and returns the body of a 200 answer; any other answer
// is an error.
func httpsGet(ctx context.Context, tlsCfg *tls.Config, u string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	tr := &http.Transport{TLSClientConfig: tlsCfg}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return body, errors.New(resp.Status)
	}
	return body, nil
}

// TestQuotaFor: etcd's default for an empty cluster; 8 GiB for a restored
// snapshot; past 8 GiB, the snapshot's size and 1 GiB more.
func TestQuotaFor(t *testing.T) {
	for _, c := range []struct{ size, want int64 }{
		{0, 2 << 30}, {1 << 20, 8 << 30}, {7 << 30, 8 << 30}, {9 << 30, 10 << 30},
	} {
		if got := quotaFor(c.size); got != c.want {
			t.Errorf("quotaFor(%d) = %d, want %d", c.size, got, c.want)
		}
	}
}
