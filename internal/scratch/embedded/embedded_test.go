package embedded

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
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
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{src.EtcdEndpoint}, DialTimeout: 5 * time.Second})
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
