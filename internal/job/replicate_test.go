package job_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/job"
	"github.com/lifeboat-dr/lifeboat/internal/keys/local"
	"github.com/lifeboat-dr/lifeboat/internal/replica"
	"github.com/lifeboat-dr/lifeboat/internal/store/fs"
	"github.com/lifeboat-dr/lifeboat/internal/wire"
)

const replicaPlans = `apiVersion: lifeboat.dev/v1alpha1
kind: Store
metadata: {name: primary}
spec: {type: fs, path: %[1]q, objectLock: {mode: COMPLIANCE, retention: 1d}}
---
apiVersion: lifeboat.dev/v1alpha1
kind: Store
metadata: {name: dr}
spec: {type: fs, path: %[2]q, objectLock: {mode: COMPLIANCE, retention: 1d}}
---
apiVersion: lifeboat.dev/v1alpha1
kind: KeyProvider
metadata: {name: local}
spec: {type: local, keyring: %[3]q}
---
apiVersion: lifeboat.dev/v1alpha1
kind: RotationPolicy
metadata: {name: rotate}
spec: {keyProvider: local, retireOldVersions: never}
---
apiVersion: lifeboat.dev/v1alpha1
kind: BackupPlan
metadata: {name: clinic}
spec:
  store: primary
  keyProvider: local
  retention: 1d
  sources: [{encryptionConfig: {file: %[4]q}}]
`

// TestCatchUp: backups taken before a plan had a replica are copied by
// CatchUp (serve's loop), oldest first, with the lag 0 afterwards; a
// backup taken with the replica configured is copied as it commits; the
// key objects a rotation adds reach the replica within the rotation run.
func TestCatchUp(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	primaryDir, drDir, keyring, enc := filepath.Join(dir, "primary"), filepath.Join(dir, "dr"), filepath.Join(dir, "keyring.json"), filepath.Join(dir, "enc.yaml")
	if err := os.WriteFile(enc, []byte("apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - identity: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := local.Create(ctx, local.Options{Path: keyring}, "clinic-kek"); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "plans.yaml")
	if err := os.WriteFile(path, fmt.Appendf(nil, replicaPlans, primaryDir, drDir, keyring, enc), 0o600); err != nil {
		t.Fatal(err)
	}
	set, err := config.LoadPaths(path)
	if err != nil {
		t.Fatal(err)
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, err := evidence.NewSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	env := &wire.Env{Set: set, Getenv: func(string) string { return "" }}
	var ids []string
	for range 2 {
		res, err := job.Backup(ctx, env, "clinic", job.BackupOptions{Signer: signer})
		if err != nil || len(res.Replicas) != 0 {
			t.Fatalf("backup without replicas: %+v %v", res.Replicas, err)
		}
		ids = append(ids, res.Manifest.Backup)
	}

	// The plan gains a replica: serve's pass copies what is there.
	plan, _ := set.BackupPlan("clinic")
	plan.Spec.Replicas = []string{"dr"}
	lags := job.CatchUp(ctx, env, job.ReplicateOptions{Signer: signer})
	if len(lags) != 1 || lags[0].Err != nil || lags[0].Copied != 2 || lags[0].Pending != 0 || !lags[0].Behind.IsZero() {
		t.Fatalf("catch-up: %+v", lags)
	}
	dr, err := fs.Open(ctx, fs.Options{Root: drDir, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if ms, err := catalog.List(ctx, dr, catalog.ListOptions{}); err != nil || len(ms) != 2 {
		t.Fatalf("replica's backups: %v %v", ms, err)
	}

	// With the replica configured, a backup is copied as it commits.
	res, err := job.Backup(ctx, env, "clinic", job.BackupOptions{Signer: signer})
	if err != nil || len(res.Replicas) != 1 || res.Replicas[0].State != replica.StateReplicated || res.Replicas[0].Record == "" || strings.Contains(fmt.Sprint(res.Warnings), "replica") {
		t.Fatalf("backup with a replica: %+v %v %v", res.Replicas, res.Warnings, err)
	}
	ids = append(ids, res.Manifest.Backup)

	// A rotation rewraps every backup; the new key objects are on the
	// replica when it returns.
	if _, err := job.Rotate(ctx, env, "rotate", job.RotateOptions{Signer: signer}); err != nil {
		t.Fatal(err)
	}
	primary, err := fs.Open(ctx, fs.Options{Root: primaryDir, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	ms, err := catalog.List(ctx, primary, catalog.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	states, err := replica.Status(ctx, primary, dr, ms)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		n := 0
		for info, err := range dr.List(ctx, catalog.KeysPrefix(id)) {
			if err != nil {
				t.Fatal(err)
			}
			_ = info
			n++
		}
		if states[id] != replica.StateReplicated || n != 2 {
			t.Errorf("backup %s after the rotation: %s on the replica with %d key objects, want replicated with 2", id, states[id], n)
		}
	}
	if _, err := evidence.NewLog(dr, nil, nil).Verify(ctx, signer.PublicKey()); err != nil {
		t.Fatalf("the replica's evidence log: %v", err)
	}
}
