package backup_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/backup"
	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/keys/local"
	"github.com/lifeboat-dr/lifeboat/internal/source/etcd/etcdtest"
	"github.com/lifeboat-dr/lifeboat/internal/store"
	"github.com/lifeboat-dr/lifeboat/internal/store/fs"
	"github.com/lifeboat-dr/lifeboat/internal/testenv"
)

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

type fixture struct {
	st      *fs.Store
	keyring *local.Keyring
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := fs.Open(ctx, fs.Options{Root: filepath.Join(dir, "store")})
	if err != nil {
		t.Fatal(err)
	}
	k, err := local.Create(ctx, local.Options{Path: filepath.Join(dir, "keyring.json")}, "test-kek")
	if err != nil {
		t.Fatal(err)
	}
	return fixture{st, k}
}

func plan(name string, sources ...config.Source) *config.BackupPlan {
	return &config.BackupPlan{
		Metadata: config.ObjectMeta{Name: name},
		Spec: config.BackupPlanSpec{Store: "local", KeyProvider: "local", Retention: config.Retention{Default: config.Duration(24 * time.Hour)},
			Compression: config.CompressionZstd, Sources: sources},
	}
}

func etcdSource(endpoints ...string) config.Source {
	return config.Source{Etcd: &config.EtcdSource{Endpoints: endpoints, DialTimeout: config.Duration(2 * time.Second)}}
}

// objects lists every key in the store.
func objects(t *testing.T, st store.Store) []string {
	t.Helper()
	var keys []string
	for info, err := range st.List(context.Background(), "") {
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, info.Key)
	}
	return keys
}

// TestRunCluster backs up a real source cluster (etcd + kube-apiserver
// with Secrets encrypted at rest) and verifies the backup with and without
// its keys.
func TestRunCluster(t *testing.T) {
	ctx := testContext(t)
	c := testenv.StartCluster(t)
	for _, obj := range []struct{ path, body string }{
		{"/api/v1/namespaces", `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"ehr"}}`},
		{"/api/v1/namespaces/ehr/secrets", `{"apiVersion":"v1","kind":"Secret","metadata":{"name":"db"},"stringData":{"password":"PHI-canary-9f2"}}`},
		{"/api/v1/namespaces/ehr/configmaps", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"settings"},"data":{"a":"b"}}`},
	} {
		resp, err := c.Client().Post(c.Server+obj.path, "application/json", strings.NewReader(obj.body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("POST %s: %s", obj.path, resp.Status)
		}
	}
	f := newFixture(t)
	var logs bytes.Buffer
	var progress []backup.Progress
	p := plan("control-plane",
		etcdSource(c.Etcd.Endpoint),
		config.Source{EncryptionConfig: &config.EncryptionConfigSource{File: c.EncryptionConfig}},
		config.Source{Manifests: &config.ManifestsSource{}},
	)
	p.Spec.Cluster = &config.ClusterRef{Kubeconfig: c.Kubeconfig}
	m, err := backup.Run(ctx, backup.Options{
		Plan: p, Store: f.st, Keys: f.keyring, Version: "test",
		Logger:   slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Progress: func(pr backup.Progress) { progress = append(progress, pr) },
	})
	if err != nil {
		t.Fatalf("Run: %v\nlogs:\n%s", err, logs.String())
	}
	if m.Status != catalog.StatusComplete || len(m.Skipped) != 0 || len(m.Artifacts) != 3 || m.Manifests == nil || m.Manifests.Objects == 0 {
		t.Fatalf("manifest: %+v", m)
	}
	if m.Etcd == nil || m.Etcd.Inventory.Prefixes["/registry/secrets/"] < 1 || m.Etcd.Inventory.Prefixes["/registry/namespaces/"] < 1 {
		t.Fatalf("etcd facts: %+v", m.Etcd)
	}
	if m.EncryptionConfig == nil || strings.Join(m.EncryptionConfig.Providers, ",") != "aescbc,identity" || strings.Join(m.EncryptionConfig.KeyNames, ",") != "key1" {
		t.Fatalf("encryption config: %+v", m.EncryptionConfig)
	}
	if m.Lifeboat.Version != "test" || m.KEK.Provider != "local" || m.KEK.Key != "test-kek" || m.KEK.Version != "1" {
		t.Fatalf("manifest: %+v", m)
	}
	last := progress[len(progress)-1]
	if len(progress) < 2 || !last.Finished || last.Artifact != catalog.ArtifactManifests {
		t.Fatalf("progress: %+v", progress)
	}
	sawEtcd := false
	for _, pr := range progress {
		if pr.Artifact == catalog.ArtifactEtcdSnapshot && pr.Finished {
			a, _ := m.Artifact(catalog.ArtifactEtcdSnapshot)
			sawEtcd = pr.Done == a.PlaintextSize && pr.Total == m.Etcd.DBSize
		}
	}
	if !sawEtcd {
		t.Fatalf("no final progress for the etcd snapshot: %+v", progress)
	}
	for _, want := range []string{`"backup":"` + m.Backup + `"`, `"artifact":"etcd-snapshot.db"`, `"msg":"backup committed"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("logs lack %s", want)
		}
	}
	encCfg, _ := os.ReadFile(c.EncryptionConfig)
	_, secretLine, _ := strings.Cut(string(encCfg), "secret: ")
	secretLine, _, _ = strings.Cut(secretLine, "\n")
	if strings.Contains(logs.String(), secretLine) || strings.Contains(logs.String(), "PHI-canary") {
		t.Fatal("logs hold a secret")
	}

	for _, readData := range []bool{false, true} {
		res, err := catalog.Verify(ctx, f.st, m.Backup, readData, f.keyring)
		if err != nil || !res.OK {
			t.Fatalf("Verify(readData=%v): %+v, %v", readData, res, err)
		}
	}
	list, err := catalog.List(ctx, f.st, catalog.ListOptions{})
	if err != nil || len(list) != 1 || list[0].Backup != m.Backup {
		t.Fatalf("List: %v", err)
	}

	// The snapshot decrypts to a database whose Secrets are still
	// encrypted at rest (the aescbc prefix), with the checked digest.
	dk, _, err := catalog.OpenKey(ctx, f.st, m.Backup, m.DataKeyID, f.keyring)
	if err != nil {
		t.Fatal(err)
	}
	defer dk.Destroy()
	var snap bytes.Buffer
	if _, err := catalog.DecryptArtifact(ctx, f.st, m, catalog.ArtifactEtcdSnapshot, dk, &snap); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(snap.Bytes(), []byte("k8s:enc:aescbc:v1:key1:")) || bytes.Contains(snap.Bytes(), []byte("PHI-canary")) {
		t.Fatal("snapshot does not hold the Secret encrypted at rest")
	}
}

// TestRunEtcdDown: an etcd that does not answer fails the backup with an
// error naming the endpoint, and nothing is written.
func TestRunEtcdDown(t *testing.T) {
	ctx := testContext(t)
	f := newFixture(t)
	down := "http://127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	_, err := backup.Run(ctx, backup.Options{Plan: plan("p", etcdSource(down)), Store: f.st, Keys: f.keyring})
	if err == nil || !strings.Contains(err.Error(), down) {
		t.Fatalf("Run: %v", err)
	}
	if objs := objects(t, f.st); len(objs) != 0 {
		t.Fatalf("objects written: %v", objs)
	}
}

// TestRunCutShort: a snapshot stream cut short aborts the artifact (the
// store commits nothing for it) and the backup; no manifest.
func TestRunCutShort(t *testing.T) {
	ctx := testContext(t)
	e := testenv.StartEtcd(t)
	etcdtest.Fill(t, ctx, etcdtest.Client(t, e.Endpoint), "/registry/configmaps/bulk/", 60, 50<<10)
	proxy := etcdtest.NewProxy(t, e.Endpoint, etcdtest.ProxyOptions{CutAfter: 1 << 20})
	f := newFixture(t)
	_, err := backup.Run(ctx, backup.Options{Plan: plan("p", etcdSource(proxy.Endpoint)), Store: f.st, Keys: f.keyring})
	if err == nil || !strings.Contains(err.Error(), proxy.Endpoint) {
		t.Fatalf("Run: %v", err)
	}
	if objs := objects(t, f.st); len(objs) != 0 {
		t.Fatalf("objects written: %v", objs)
	}
	// The next run, straight to etcd, succeeds.
	m, err := backup.Run(ctx, backup.Options{Plan: plan("p", etcdSource(e.Endpoint)), Store: f.st, Keys: f.keyring})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := catalog.Verify(ctx, f.st, m.Backup, true, f.keyring); err != nil || !res.OK {
		t.Fatalf("Verify: %v", err)
	}
}

// TestRunKeysDown: a key provider that fails stops the run before any
// data moves.
func TestRunKeysDown(t *testing.T) {
	ctx := testContext(t)
	f := newFixture(t)
	path := filepath.Join(t.TempDir(), "gone.json")
	k, err := local.Create(ctx, local.Options{Path: path}, "gone")
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(path)
	enc := filepath.Join(t.TempDir(), "enc.yaml")
	os.WriteFile(enc, []byte("apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources: [{resources: [secrets], providers: [{identity: {}}]}]\n"), 0o600)
	_, err = backup.Run(ctx, backup.Options{Plan: plan("p", config.Source{EncryptionConfig: &config.EncryptionConfigSource{File: enc}}), Store: f.st, Keys: k})
	if err == nil || !strings.Contains(err.Error(), "wrap data key") {
		t.Fatalf("Run: %v", err)
	}
	if objs := objects(t, f.st); len(objs) != 0 {
		t.Fatalf("objects written: %v", objs)
	}
}

// TestRunBoundedMemory backs up a small and a large etcd: the heap a
// backup needs (compressor window, gRPC buffers, one inventory page) does
// not grow with the snapshot, which streams and is never held.
func TestRunBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("fills etcd with 112 MiB")
	}
	small := peakHeapGrowth(t, 16)
	large := peakHeapGrowth(t, 96)
	t.Logf("heap growth: %d MiB for 16 MiB of data, %d MiB for 96 MiB", small>>20, large>>20)
	if large > small+24<<20 || large > 80<<20 {
		t.Fatalf("heap growth %d MiB for 96 MiB of data, %d MiB for 16 MiB: it grows with the snapshot", large>>20, small>>20)
	}
}

// peakHeapGrowth backs up an etcd holding mib MiB of incompressible values
// and returns how far the heap in use grew above where it started.
func peakHeapGrowth(t *testing.T, mib int) int64 {
	ctx := testContext(t)
	e := testenv.StartEtcd(t)
	etcdtest.Fill(t, ctx, etcdtest.Client(t, e.Endpoint), "/registry/configmaps/bulk/", mib*8, 128<<10)
	f := newFixture(t)

	// Collect often, so that the heap in use follows live data rather
	// than garbage (the snapshot and the inventory each allocate the
	// whole keyspace in passing).
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	m, err := backup.Run(ctx, backup.Options{Plan: plan("big", etcdSource(e.Endpoint)), Store: f.st, Keys: f.keyring})
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if a, _ := m.Artifact(catalog.ArtifactEtcdSnapshot); a.PlaintextSize < int64(mib)<<20 {
		t.Fatalf("snapshot of %d bytes, want at least %d MiB", a.PlaintextSize, mib)
	}
	return int64(peak.Load()) - int64(base.HeapInuse)
}

func TestRunRefusesEmptyPlan(t *testing.T) {
	f := newFixture(t)
	_, err := backup.Run(context.Background(), backup.Options{Plan: plan("p"), Store: f.st, Keys: f.keyring})
	if err == nil || !strings.Contains(err.Error(), "no source") {
		t.Fatalf("Run: %v", err)
	}
	if objs := objects(t, f.st); len(objs) != 0 {
		t.Fatalf("objects written: %v", objs)
	}
}

// TestRunWithoutKubernetes: a Kubernetes source with no way to reach an API
// server fails naming the setting to fix, and writes nothing.
func TestRunWithoutKubernetes(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "none"))
	t.Setenv("HOME", t.TempDir())
	f := newFixture(t)
	_, err := backup.Run(context.Background(), backup.Options{Plan: plan("p", config.Source{Volumes: &config.VolumesSource{}}), Store: f.st, Keys: f.keyring})
	var rerr *backup.RunError
	if !errors.As(err, &rerr) || rerr.Step != config.SourceVolumes || !strings.Contains(err.Error(), "spec.cluster.kubeconfig") {
		t.Fatalf("Run: %v", err)
	}
	if objs := objects(t, f.st); len(objs) != 0 {
		t.Fatalf("objects written: %v", objs)
	}
}
