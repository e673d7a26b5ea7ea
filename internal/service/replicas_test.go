package service

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/job"
	"github.com/lifeboat-dr/lifeboat/internal/keys/local"
	"github.com/lifeboat-dr/lifeboat/internal/server"
	"github.com/lifeboat-dr/lifeboat/internal/store/fs"
	"github.com/lifeboat-dr/lifeboat/internal/wire"
)

// replicaLag reads lifeboat_replica_lag_seconds{plan,store} from m.
func replicaLag(t *testing.T, m *server.Metrics, plan, store string) (float64, bool) {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "lifeboat_replica_lag_seconds" {
			continue
		}
		for _, s := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range s.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["plan"] == plan && labels["store"] == store {
				return s.GetGauge().GetValue(), true
			}
		}
	}
	return 0, false
}

// TestReplicatorBackoff: serve's catch-up loop (a fake job.CatchUp on a
// fake clock) retries a failing replica after 30s, then 60s, then, caught
// up, every 5 minutes; the lag metric grows from when the replica was
// last seen caught up while it cannot be read, follows the oldest backup
// not replicated, and is 0 once caught up.
func TestReplicatorBackoff(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 2, 0, 0, 0, time.UTC)
	clk := clocktesting.NewFakeClock(t0)
	m := server.NewMetrics(clk.Now)
	set := &config.Set{BackupPlans: []*config.BackupPlan{{
		Metadata: config.ObjectMeta{Name: "control-plane"},
		Spec:     config.BackupPlanSpec{Store: "primary", Replicas: []string{"dr"}},
	}}}
	env := &wire.Env{Set: set}
	unreachable := errors.New("dial tcp: connection refused")
	backupDone := t0.Add(-10 * time.Minute)
	script := []job.ReplicaLag{
		{Plan: "control-plane", Store: "dr", Err: unreachable},
		{Plan: "control-plane", Store: "dr", Err: unreachable},
		{Plan: "control-plane", Store: "dr", Err: unreachable, Behind: backupDone, Pending: 1},
		{Plan: "control-plane", Store: "dr", Copied: 1},
		{Plan: "control-plane", Store: "dr"},
	}
	passes := make(chan time.Time)
	i := 0
	r := &replicator{
		env: func() *wire.Env { return env }, metrics: m, clock: clk, log: slog.New(slog.DiscardHandler),
		catchUp: func(ctx context.Context, e *wire.Env, o job.ReplicateOptions) []job.ReplicaLag {
			l := script[i]
			i++
			passes <- clk.Now()
			return []job.ReplicaLag{l}
		},
	}
	ctx, cancel := context.WithCancel(t.Context())
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { defer close(done); r.run(ctx, stop) }()
	defer func() { cancel(); <-done }()

	// step waits for the loop to sleep, advances the clock by d and
	// returns when the pass it starts has set the metric.
	step := func(d time.Duration) time.Time {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !clk.HasWaiters() {
			if time.Now().After(deadline) {
				t.Fatal("the loop does not wait")
			}
			time.Sleep(time.Millisecond)
		}
		clk.Step(d)
		select {
		case at := <-passes:
			for !clk.HasWaiters() { // the pass has finished and set the metric
				time.Sleep(time.Millisecond)
			}
			return at
		case <-time.After(10 * time.Second):
			t.Fatalf("no pass after %s", d)
		}
		return time.Time{}
	}
	lag := func() float64 {
		t.Helper()
		v, ok := replicaLag(t, m, "control-plane", "dr")
		if !ok {
			t.Fatal("no lifeboat_replica_lag_seconds{plan=control-plane,store=dr}")
		}
		return v
	}

	if at := step(0); !at.Equal(t0) {
		t.Fatalf("first pass at %s, want at once", at)
	}
	if v := lag(); v != 0 {
		t.Fatalf("lag %v at the first failure", v)
	}
	if at := step(30 * time.Second); !at.Equal(t0.Add(30 * time.Second)) {
		t.Fatalf("second pass at %s", at)
	}
	if v := lag(); v != 30 {
		t.Fatalf("lag %v, want 30 (unreadable since the first failure)", v)
	}
	// The next retry is 60s later, not 30s.
	clk.Step(30 * time.Second)
	select {
	case at := <-passes:
		t.Fatalf("a pass at %s, before the doubled delay", at)
	case <-time.After(50 * time.Millisecond):
	}
	if at := step(30 * time.Second); !at.Equal(t0.Add(90 * time.Second)) {
		t.Fatalf("third pass at %s", at)
	}
	if v := lag(); v != (10*time.Minute + 90*time.Second).Seconds() {
		t.Fatalf("lag %v, want since the backup not replicated completed", v)
	}
	// The delay doubled again (120s); then caught up, the lag is 0 and
	// the next pass comes after the interval.
	if at := step(120 * time.Second); !at.Equal(t0.Add(210 * time.Second)) {
		t.Fatalf("fourth pass at %s", at)
	}
	if v := lag(); v != 0 {
		t.Fatalf("lag %v after catching up", v)
	}
	if at := step(ReplicaInterval); !at.Equal(t0.Add(210*time.Second + ReplicaInterval)) {
		t.Fatalf("fifth pass at %s", at)
	}
}

// TestReplicatorPass: one pass of serve's loop with the real job.CatchUp
// on fs stores: a replica that cannot be opened is not caught up (the
// lag counts from that pass), and once it can, the backup taken before
// is copied and the lag is 0.
func TestReplicatorPass(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	enc, keyring := filepath.Join(dir, "enc.yaml"), filepath.Join(dir, "keyring.json")
	if err := os.WriteFile(enc, []byte("apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - identity: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := local.Create(ctx, local.Options{Path: keyring}, "kek"); err != nil {
		t.Fatal(err)
	}
	// The replica's directory is, at first, a file: it cannot be opened.
	drDir := filepath.Join(dir, "dr")
	if err := os.WriteFile(drDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "lifeboat.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, `apiVersion: lifeboat.dev/v1alpha1
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
kind: BackupPlan
metadata: {name: clinic}
spec:
  store: primary
  replicas: [dr]
  keyProvider: local
  retention: 1d
  sources: [{encryptionConfig: {file: %[4]q}}]
`, filepath.Join(dir, "primary"), drDir, keyring, enc), 0o600); err != nil {
		t.Fatal(err)
	}
	set, err := config.LoadPaths(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, err := evidence.NewSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	env := &wire.Env{Set: set, Getenv: func(string) string { return "" }}
	res, err := job.Backup(ctx, env, "clinic", job.BackupOptions{Signer: signer})
	if err != nil || len(res.Replicas) != 1 || res.Replicas[0].Error == "" {
		t.Fatalf("backup with its replica unreachable: %+v %v", res.Replicas, err)
	}

	t0 := time.Now()
	clk := clocktesting.NewFakeClock(t0)
	m := server.NewMetrics(clk.Now)
	r := &replicator{env: func() *wire.Env { return env }, signer: signer, metrics: m, clock: clk, log: slog.New(slog.DiscardHandler), catchUp: job.CatchUp}
	r.since = map[[2]string]time.Time{}
	if r.pass(ctx) {
		t.Fatal("a pass with the replica unreachable says caught up")
	}
	clk.Step(time.Minute)
	if v, ok := replicaLag(t, m, "clinic", "dr"); !ok || v != 60 {
		t.Fatalf("lag %v %v, want 60s since the first failed pass", v, ok)
	}
	if err := os.Remove(drDir); err != nil {
		t.Fatal(err)
	}
	if !r.pass(ctx) {
		t.Fatal("the pass did not catch the replica up")
	}
	if v, _ := replicaLag(t, m, "clinic", "dr"); v != 0 {
		t.Fatalf("lag %v after catching up", v)
	}
	dr, err := fs.Open(ctx, fs.Options{Root: drDir, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := catalog.Read(ctx, dr, res.Manifest.Backup); err != nil {
		t.Fatalf("the backup on the replica: %v", err)
	}
}
