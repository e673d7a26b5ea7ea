package drill

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/backup"
	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/envelope"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/keys/local"
	"github.com/lifeboat-dr/lifeboat/internal/scratch"
	"github.com/lifeboat-dr/lifeboat/internal/scratch/embedded"
	"github.com/lifeboat-dr/lifeboat/internal/store"
	"github.com/lifeboat-dr/lifeboat/internal/store/fs"
	"github.com/lifeboat-dr/lifeboat/internal/testenv"
)

// env is a source cluster seeded through the API, backed up into an fs
// store with a local keyring.
type env struct {
	dir      string
	set      *config.Set
	store    *fs.Store
	keys     *local.Keyring
	provider scratch.Provider
	backups  []catalog.Manifest
}

func (e *env) options(t *testing.T, drillName string) Options {
	d, ok := e.set.Drill(drillName)
	if !ok {
		t.Fatalf("no drill %s", drillName)
	}
	plan, _ := e.set.BackupPlan(d.Spec.BackupPlan)
	return Options{
		Drill: d, Plan: plan, Store: e.store, Keys: e.keys, Scratch: e.provider,
		TempDir: t.TempDir(),
		Progress: func(ev Event) {
			t.Logf("[%6.2fs] %-19s %s", ev.Elapsed.Seconds(), ev.Phase, ev.Message)
		},
	}
}

// storeAndKeys is the Store (an fs path, %[1]q) and KeyProvider (a
// local keyring, %[2]q) of the drill tests' configurations.
const storeAndKeys = `
apiVersion: lifeboat.dev/v1alpha1
kind: Store
metadata: {name: test-store}
spec:
  type: fs
  path: %[1]q
  objectLock: {mode: COMPLIANCE, retention: 1d}
---
apiVersion: lifeboat.dev/v1alpha1
kind: KeyProvider
metadata: {name: test-keys}
spec: {type: local, keyring: %[2]q}
---`

const drillConfig = storeAndKeys + `
apiVersion: lifeboat.dev/v1alpha1
kind: BackupPlan
metadata: {name: control-plane}
spec:
  store: test-store
  keyProvider: test-keys
  retention: 1d
  sources:
    - etcd: {endpoints: [%[3]q], dialTimeout: 30s}
    - encryptionConfig: {file: %[4]q}
---
apiVersion: lifeboat.dev/v1alpha1
kind: Drill
metadata: {name: control-plane}
spec:
  backupPlan: control-plane
  select: {latest: true}
  checks:
    - inventory: {excludeResources: [events, events.events.k8s.io]}
    - objects:
        items:
          - {apiVersion: v1, kind: Namespace, name: ehr}
          - {apiVersion: apps/v1, kind: Deployment, namespace: ehr, name: ehr-api}
          - {apiVersion: v1, kind: Service, namespace: ehr, name: ehr-api}
          - {apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, namespace: ehr, name: default-deny}
          - {apiVersion: rbac.authorization.k8s.io/v1, kind: ClusterRole, name: ehr-reader}
    - policies: {}
    - secretsReadable: {}
  targets: {rto: 15m, rpo: 1h}
---
apiVersion: lifeboat.dev/v1alpha1
kind: Drill
metadata: {name: missing-object}
spec:
  backupPlan: control-plane
  select: {latest: true}
  checks:
    - objects:
        items:
          - {apiVersion: apps/v1, kind: Deployment, namespace: ehr, name: ehr-api}
          - {apiVersion: apps/v1, kind: Deployment, namespace: ehr, name: no-such-deployment}
  targets: {rto: 15m, rpo: 1h}
`

// newEnv starts a source cluster, seeds it and takes two backups.
func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := testContext(t, 3*time.Minute)
	bin := testenv.Binary(t, "kube-apiserver")
	src := testenv.StartCluster(t)
	seed(t, ctx, scratch.Access{Server: src.Server, Client: src.Client()})

	e := configuredEnv(t, ctx, t.TempDir(), embedded.Provider{KubeAPIServerBinary: bin}, drillConfig, src.Etcd.Endpoint, src.EncryptionConfig)
	plan, _ := e.set.BackupPlan("control-plane")
	for range 2 {
		m, err := backup.Run(ctx, backup.Options{Plan: plan, Store: e.store, Keys: e.keys})
		if err != nil {
			t.Fatalf("backup: %v", err)
		}
		e.backups = append(e.backups, m)
		time.Sleep(1100 * time.Millisecond) // backup IDs have whole seconds
	}
	return e
}

// configuredEnv writes configFmt (storeAndKeys first: %[1]q the store's
// path, %[2]q the keyring, then args from %[3]) to dir/lifeboat.yaml,
// loads it, and creates the keyring and opens the store.
func configuredEnv(t *testing.T, ctx context.Context, dir string, provider scratch.Provider, configFmt string, args ...any) *env {
	t.Helper()
	cfg, keyring := filepath.Join(dir, "lifeboat.yaml"), filepath.Join(dir, "keyring.json")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, configFmt, append([]any{filepath.Join(dir, "store"), keyring}, args...)...), 0o600); err != nil {
		t.Fatal(err)
	}
	set, err := config.LoadPaths(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{dir: dir, set: set, provider: provider}
	if e.keys, err = local.Create(ctx, local.Options{Path: keyring}, "test-kek"); err != nil {
		t.Fatal(err)
	}
	if e.store, err = fs.Open(ctx, fs.Options{Root: filepath.Join(dir, "store")}); err != nil {
		t.Fatal(err)
	}
	return e
}

func testContext(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// seed creates namespaces, deployments, services, RBAC objects,
// NetworkPolicies and Secrets through the Kubernetes API.
func seed(t *testing.T, ctx context.Context, api scratch.Access) {
	t.Helper()
	post := func(path string, obj map[string]any) {
		if err := api.Do(ctx, http.MethodPost, path, obj, nil); err != nil {
			t.Fatalf("seed %s: %v", path, err)
		}
	}
	for _, ns := range []string{"ehr", "billing"} {
		post("/api/v1/namespaces", map[string]any{"metadata": map[string]any{"name": ns,
			"labels": map[string]string{"pod-security.kubernetes.io/enforce": "restricted"}}})
		app := ns + "-api"
		labels := map[string]string{"app": app}
		post("/apis/apps/v1/namespaces/"+ns+"/deployments", map[string]any{"metadata": map[string]any{"name": app},
			"spec": map[string]any{"selector": map[string]any{"matchLabels": labels},
				"template": map[string]any{"metadata": map[string]any{"labels": labels},
					"spec": map[string]any{"containers": []any{map[string]any{"name": "api", "image": "example.org/" + app + ":1"}}}}}})
		post("/api/v1/namespaces/"+ns+"/services", map[string]any{"metadata": map[string]any{"name": app},
			"spec": map[string]any{"selector": labels, "ports": []any{map[string]any{"port": 443}}}})
		for i := range 3 {
			post("/api/v1/namespaces/"+ns+"/secrets", map[string]any{"metadata": map[string]any{"name": app + "-secret-" + strconv.Itoa(i)},
				"stringData": map[string]string{"password": "not-a-real-secret-" + strconv.Itoa(i)}})
		}
		post("/apis/networking.k8s.io/v1/namespaces/"+ns+"/networkpolicies", map[string]any{"metadata": map[string]any{"name": "default-deny"},
			"spec": map[string]any{"podSelector": map[string]any{}, "policyTypes": []any{"Ingress"}}})
		post("/apis/rbac.authorization.k8s.io/v1/namespaces/"+ns+"/roles", map[string]any{"metadata": map[string]any{"name": "operator"},
			"rules": []any{map[string]any{"apiGroups": []any{"apps"}, "resources": []any{"deployments"}, "verbs": []any{"get", "patch"}}}})
		post("/apis/rbac.authorization.k8s.io/v1/namespaces/"+ns+"/rolebindings", map[string]any{"metadata": map[string]any{"name": "operators"},
			"roleRef":  map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "operator"},
			"subjects": []any{map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "sre"}}})
	}
	post("/apis/rbac.authorization.k8s.io/v1/clusterroles", map[string]any{"metadata": map[string]any{"name": "ehr-reader"},
		"rules": []any{map[string]any{"apiGroups": []any{"apps"}, "resources": []any{"deployments"}, "verbs": []any{"get", "list"}}}})
}

// TestDrill backs up a real source cluster (etcd + kube-apiserver with
// Secrets encrypted at rest) and drills the restore into the embedded
// scratch cluster: a passing drill, a failed check, a corrupted artifact
// (caught by the store's digest and, with a forged store record, by the
// manifest's), and an interrupted drill.
func TestDrill(t *testing.T) {
	e := newEnv(t)

	t.Run("pass", func(t *testing.T) {
		ctx := testContext(t, 3*time.Minute)
		opts := e.options(t, "control-plane")
		opts.Keep = true
		res, err := Run(ctx, opts)
		if err != nil {
			t.Fatalf("drill: %v\nreasons: %q", err, res.Reasons)
		}
		if res.Verdict != evidence.VerdictPass || res.BackupID != e.backups[1].Backup {
			t.Fatalf("verdict %s, backup %s, reasons %q", res.Verdict, res.BackupID, res.Reasons)
		}
		rto, ok1 := res.RTO()
		rpo, ok2 := res.RPO()
		if !ok1 || !ok2 || rto <= 0 || rpo <= 0 {
			t.Fatalf("RTO %v (%v), RPO %v (%v)", rto, ok1, rpo, ok2)
		}
		t.Logf("RTO %v, RPO %v", rto, rpo)
		// The worst gap: between the two backups, or from the newest to
		// the incident, whichever is longer.
		wantGap := max(e.backups[1].PointInTime().Sub(e.backups[0].PointInTime()), res.Incident.Sub(e.backups[1].PointInTime()))
		if g := res.Measured.WorstGapMs; g == nil || *g != *msUp(wantGap) || *g < *res.Measured.RPOMs {
			t.Errorf("worst gap %v ms, want %v (RPO %d ms)", g, wantGap, *res.Measured.RPOMs)
		}
		// RTO runs to the moment every check passed: the end of verify.
		for _, p := range res.Phases {
			if p.Name == PhaseVerify && rto < p.Offset+p.Duration {
				t.Errorf("RTO %v ends before the verify phase does (%v)", rto, p.Offset+p.Duration)
			}
		}
		var names []string
		for _, p := range res.Phases {
			names = append(names, p.Name)
			if p.Outcome != evidence.PhaseSuccess {
				t.Errorf("phase %+v", p)
			}
			t.Logf("phase %-20s +%-8v %-8v peak memory %d MiB", p.Name, p.Offset.Round(time.Millisecond), p.Duration.Round(time.Millisecond), p.PeakMemoryBytes>>20)
			// Every phase that ran has its peak memory; while the
			// scratch kube-apiserver runs (a child process) it counts.
			if p.PeakMemoryBytes < 10<<20 {
				t.Errorf("phase %s: peak memory %d bytes", p.Name, p.PeakMemoryBytes)
			}
		}
		if sel, ver := phaseNamed(res.Phases, PhaseSelect), phaseNamed(res.Phases, PhaseVerify); ver.PeakMemoryBytes < sel.PeakMemoryBytes+50<<20 {
			t.Errorf("peak memory while verifying against the scratch kube-apiserver %d MiB, before it started %d MiB: its resident set is not counted",
				ver.PeakMemoryBytes>>20, sel.PeakMemoryBytes>>20)
		}
		if got := strings.Join(names, ","); got != strings.Join(PhaseOrder, ",") {
			t.Errorf("phases %s", got)
		}
		wantChecks := map[string]string{
			"backup complete":                                             "status complete: no source skipped",
			"inventory: etcd keyspace":                                    "compared with the manifest's inventory",
			"inventory: namespaces":                                       "served =",
			"inventory: deployments.apps":                                 "2 served = 2 in the backup",
			"inventory: services":                                         "restored keys under /registry/services/: ",
			"inventory: secrets":                                          "6 served = 6 in the backup under /registry/secrets/ at revision",
			"inventory: roles.rbac.authorization.k8s.io":                  "served =",
			"inventory: rolebindings.rbac.authorization.k8s.io":           "served =",
			"inventory: clusterroles.rbac.authorization.k8s.io":           "served =",
			"inventory: clusterrolebindings.rbac.authorization.k8s.io":    "served =",
			"inventory: networkpolicies.networking.k8s.io":                "2 served = 2 in the backup",
			"object: v1 Namespace ehr":                                    "served as backed up",
			"object: apps/v1 Deployment ehr/ehr-api":                      "/registry/deployments/ehr/ehr-api",
			"object: v1 Service ehr/ehr-api":                              "/registry/services/specs/ehr/ehr-api",
			"object: networking.k8s.io/v1 NetworkPolicy ehr/default-deny": "served as backed up",
			"object: rbac.authorization.k8s.io/v1 ClusterRole ehr-reader": "served as backed up",
			"policies":        "policy objects served as backed up",
			"secretsReadable": "all 6 Secrets decrypted and served (6 encrypted at rest (aescbc/key1))",
		}
		for _, c := range res.Checks {
			t.Logf("%-4s %s: %s", c.Outcome, c.Name, c.Detail)
			want, ok := wantChecks[c.Name]
			if !ok {
				t.Errorf("unexpected check %q", c.Name)
				continue
			}
			delete(wantChecks, c.Name)
			if c.Outcome != evidence.CheckPass || !strings.Contains(c.Detail, want) {
				t.Errorf("check %s: %s %q, want pass with %q", c.Name, c.Outcome, c.Detail, want)
			}
		}
		for name := range wantChecks {
			t.Errorf("check %s missing", name)
		}

		// --keep: the scratch cluster still serves, with its kubeconfig.
		if res.Cluster == nil {
			t.Fatal("kept cluster missing")
		}

		// Against a manifest whose inventory differs from the restored
		// keyspace (one Secret and one Service key fewer, another digest),
		// the keyspace and per-resource checks fail, naming the numbers.
		tampered := *res.Manifest
		etcdFacts := *tampered.Etcd
		etcdFacts.Inventory.Prefixes = maps.Clone(etcdFacts.Inventory.Prefixes)
		etcdFacts.Inventory.Prefixes["/registry/secrets/"]--
		etcdFacts.Inventory.Prefixes["/registry/services/"]--
		etcdFacts.Inventory.Digest = strings.Repeat("0", 64)
		tampered.Etcd = &etcdFacts
		v, err := newVerifier(ctx, res.Cluster.Access(), tampered, "", slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		// No inventory check listed: the keyspace comparison runs anyway.
		onlyObjects := []config.Check{{Objects: &config.ObjectsCheck{Items: []config.ObjectRef{{APIVersion: "v1", Kind: "Namespace", Name: "ehr"}}}}}
		got := v.run(ctx, onlyObjects, nil)
		if len(got) != 2 || got[0].Name != "inventory: etcd keyspace" || got[0].Outcome != evidence.CheckFail ||
			!strings.Contains(got[0].Detail, "/registry/secrets/ 6 (manifest 5)") || !strings.Contains(got[0].Detail, "digest") {
			t.Errorf("keyspace check against a tampered manifest: %+v", got)
		}
		got = v.run(ctx, []config.Check{{Inventory: &config.InventoryCheck{}}}, nil)
		v.close()
		byName := make(map[string]evidence.Check)
		for _, c := range got {
			byName[c.Name] = c
		}
		if c := byName["inventory: secrets"]; c.Outcome != evidence.CheckFail || !strings.Contains(c.Detail, "restored keys under /registry/secrets/: 6 != manifest inventory /registry/secrets/: 5") {
			t.Errorf("secrets against a tampered manifest: %+v", c)
		}
		if c := byName["inventory: services"]; c.Outcome != evidence.CheckFail || !strings.Contains(c.Detail, "!= manifest inventory /registry/services/") {
			t.Errorf("services against a tampered manifest: %+v", c)
		}
		if c := byName["inventory: etcd keyspace"]; c.Outcome != evidence.CheckFail {
			t.Errorf("keyspace against a tampered manifest: %+v", c)
		}
		acc := res.Cluster.Access()
		if _, err := os.Stat(acc.Kubeconfig); err != nil {
			t.Fatal(err)
		}
		var ns struct {
			Metadata scratch.ObjectMeta `json:"metadata"`
		}
		if err := acc.Do(ctx, http.MethodGet, "/api/v1/namespaces/billing", nil, &ns); err != nil || ns.Metadata.Name != "billing" {
			t.Fatalf("kept cluster: %v %+v", err, ns)
		}
		if err := res.Cluster.Stop(); err != nil {
			t.Fatal(err)
		}
		if left, _ := os.ReadDir(opts.TempDir); len(left) != 0 {
			t.Fatalf("temporary files left after Stop: %v", left)
		}

		// The signed report and the evidence record.
		signer, err := evidence.LoadOrCreateSigner(filepath.Join(t.TempDir(), "signing.pem"))
		if err != nil {
			t.Fatal(err)
		}
		pub, err := Publish(ctx, res, PublishOptions{Store: e.store, Signer: signer})
		if err != nil {
			t.Fatal(err)
		}
		data := readObject(t, e.store, pub.Objects.JSON.Key)
		rep, err := evidence.VerifyReport(data, pub.Objects.JSON.Key, signer.PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		if rep.Verdict != evidence.VerdictPass || len(rep.Checks) != len(res.Checks) || len(rep.Phases) != len(PhaseOrder) || len(rep.HIPAA) < 5 {
			t.Fatalf("report %+v", rep)
		}
		for i, p := range rep.Phases {
			if p.PeakMemoryBytes != res.Phases[i].PeakMemoryBytes || p.PeakMemoryBytes == 0 {
				t.Errorf("report phase %s: peak memory %d, the drill measured %d", p.Name, p.PeakMemoryBytes, res.Phases[i].PeakMemoryBytes)
			}
		}
		if md := readObject(t, e.store, "reports/"+res.RunID+"/report.md"); !strings.Contains(string(md), "PASS") {
			t.Fatalf("report.md:\n%s", md)
		}
		if pub.Record.Kind != evidence.KindDrill || pub.Record.ID != res.RunID || pub.Record.Outcome != evidence.OutcomeSuccess {
			t.Fatalf("record %+v", pub.Record)
		}
		if vr, err := evidence.NewLog(e.store, nil, nil).Verify(ctx, signer.PublicKey()); err != nil {
			t.Fatalf("evidence log: %v (%+v)", err, vr)
		}
	})

	t.Run("failed check", func(t *testing.T) {
		ctx := testContext(t, 3*time.Minute)
		opts := e.options(t, "missing-object")
		res, err := Run(ctx, opts)
		if !errors.Is(err, ErrFailed) || res.Verdict != evidence.VerdictFail {
			t.Fatalf("err %v, verdict %s", err, res.Verdict)
		}
		if _, ok := res.RTO(); ok {
			t.Error("RTO measured although a check failed")
		}
		if _, ok := res.RPO(); !ok {
			t.Error("RPO not measured")
		}
		// backup complete, the keyspace (always compared), two objects.
		if len(res.Checks) != 4 || res.Checks[0].Name != CheckBackupComplete || res.Checks[1].Name != "inventory: etcd keyspace" ||
			res.Checks[2].Outcome != evidence.CheckPass || res.Checks[3].Outcome != evidence.CheckFail ||
			!strings.Contains(res.Checks[3].Detail, "not served") {
			t.Fatalf("checks %+v", res.Checks)
		}
		if !strings.Contains(strings.Join(res.Reasons, "\n"), "check object: apps/v1 Deployment ehr/no-such-deployment failed") {
			t.Errorf("reasons %q", res.Reasons)
		}
		// A failed report is still a valid, signable report.
		signer, _ := evidence.LoadOrCreateSigner(filepath.Join(t.TempDir(), "signing.pem"))
		if _, _, err := signer.SignReport(res.Report()); err != nil {
			t.Fatalf("sign failed report: %v", err)
		}
		if left, _ := os.ReadDir(opts.TempDir); len(left) != 0 {
			t.Fatalf("temporary files left: %v", left)
		}
	})

	t.Run("select before", func(t *testing.T) {
		ctx := testContext(t, 3*time.Minute)
		opts := e.options(t, "control-plane")
		d := *opts.Drill
		d.Spec.Select = config.BackupSelector{Before: &config.Timestamp{Time: e.backups[1].PointInTime()}}
		d.Spec.Checks = []config.Check{{Inventory: &config.InventoryCheck{}}}
		opts.Drill = &d
		res, err := Run(ctx, opts)
		if err != nil || res.BackupID != e.backups[0].Backup {
			t.Fatalf("err %v, backup %s, want %s", err, res.BackupID, e.backups[0].Backup)
		}
		if rpo, _ := res.RPO(); rpo < time.Second || !res.PointInTime.Equal(e.backups[0].Etcd.TakenAt) {
			t.Fatalf("RPO %v from %v", rpo, res.PointInTime)
		}
	})

	t.Run("interrupted", func(t *testing.T) {
		ctx, cancel := context.WithCancel(testContext(t, 3*time.Minute))
		opts := e.options(t, "control-plane")
		progress := opts.Progress
		opts.Progress = func(ev Event) {
			progress(ev)
			if ev.Phase == PhaseVerify {
				cancel() // Ctrl-C once the scratch cluster serves
			}
		}
		opts.Keep = true
		res, err := Run(ctx, opts)
		if !errors.Is(err, context.Canceled) || res.Cluster != nil {
			t.Fatalf("err %v, kept cluster %v", err, res.Cluster)
		}
		if left, _ := os.ReadDir(opts.TempDir); len(left) != 0 {
			t.Fatalf("temporary files left: %v", left)
		}
	})

	t.Run("clock skew", func(t *testing.T) {
		ctx := testContext(t, time.Minute)
		opts := e.options(t, "control-plane")
		opts.Scratch = failingProvider{}
		// The incident is an hour before the backup's snapshot was taken.
		opts.Start = e.backups[1].Etcd.TakenAt.Add(-time.Hour)
		res, err := Run(ctx, opts)
		if !errors.Is(err, ErrFailed) || res.Verdict != evidence.VerdictFail {
			t.Fatalf("err %v, verdict %s", err, res.Verdict)
		}
		if !res.Started.Equal(opts.Start) || !res.Incident.Equal(opts.Start) {
			t.Errorf("started %v, incident %v, want Options.Start %v", res.Started, res.Incident, opts.Start)
		}
		if rpo, ok := res.RPO(); ok {
			t.Errorf("RPO %v measured from a snapshot taken after the incident", rpo)
		}
		var skew *evidence.Check
		for i := range res.Checks {
			if res.Checks[i].Name == CheckClockSkew {
				skew = &res.Checks[i]
			}
		}
		if skew == nil || skew.Outcome != evidence.CheckFail || !strings.Contains(skew.Detail, "snapshot taken after the incident") ||
			!strings.Contains(skew.Detail, e.backups[1].Etcd.TakenAt.UTC().Format(time.RFC3339Nano)) || !strings.Contains(skew.Detail, "1h0m0s after") {
			t.Fatalf("clock skew check %+v in %+v", skew, res.Checks)
		}
	})

	t.Run("stale temporary directories", func(t *testing.T) {
		ctx := testContext(t, time.Minute)
		opts := e.options(t, "control-plane")
		opts.Scratch = failingProvider{}
		stale := filepath.Join(opts.TempDir, "lifeboat-drill-1234")
		fresh := filepath.Join(opts.TempDir, "lifeboat-drill-5678")
		other := filepath.Join(opts.TempDir, "other-old")
		for _, d := range []string{stale, fresh, other} {
			if err := os.MkdirAll(filepath.Join(d, "artifacts"), 0o700); err != nil {
				t.Fatal(err)
			}
		}
		old := time.Now().Add(-2 * time.Hour)
		for _, d := range []string{stale, other} {
			if err := os.Chtimes(d, old, old); err != nil {
				t.Fatal(err)
			}
		}
		Run(ctx, opts)
		if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stale %s not removed: %v", stale, err)
		}
		for _, d := range []string{fresh, other} {
			if _, err := os.Stat(d); err != nil {
				t.Errorf("%s removed: %v", d, err)
			}
		}
	})

	t.Run("corrupted artifact", func(t *testing.T) {
		ctx := testContext(t, 3*time.Minute)
		id := e.backups[0].Backup
		corrupt(t, e.dir, catalog.ArtifactKey(id, catalog.ArtifactEtcdSnapshot), false)
		opts := e.options(t, "control-plane")
		d := *opts.Drill
		d.Spec.Select = config.BackupSelector{ID: id}
		opts.Drill = &d
		res, err := Run(ctx, opts)
		t.Logf("err: %v", err)
		if !errors.Is(err, ErrFailed) || !errors.Is(err, catalog.ErrVerification) || !errors.Is(err, store.ErrIntegrity) {
			t.Fatalf("err = %v", err)
		}
		if !strings.Contains(err.Error(), "artifact etcd-snapshot.db (backups/"+id+"/artifacts/etcd-snapshot.db)") {
			t.Errorf("error does not name the artifact: %v", err)
		}
		if strings.Contains(err.Error(), "decompress") {
			t.Errorf("the store's integrity error is reported as a decompression error: %v", err)
		}
		checkFailedAt(t, res, PhaseDecrypt, "etcd-snapshot.db")
	})

	t.Run("corrupted artifact with a forged store record", func(t *testing.T) {
		ctx := testContext(t, 3*time.Minute)
		id := e.backups[1].Backup
		// The bytes change and the store's record is made to match them:
		// the AEAD tags and the manifest's digests must catch it.
		corrupt(t, e.dir, catalog.ArtifactKey(id, catalog.ArtifactEncryptionConfig), true)
		opts := e.options(t, "control-plane")
		res, err := Run(ctx, opts)
		t.Logf("err: %v", err)
		if !errors.Is(err, ErrFailed) || !errors.Is(err, catalog.ErrVerification) {
			t.Fatalf("err = %v", err)
		}
		if !strings.Contains(err.Error(), "artifact encryption-config.yaml") ||
			!(errors.Is(err, envelope.ErrAuthentication) || errors.Is(err, envelope.ErrMismatch) || errors.Is(err, envelope.ErrFormat)) {
			t.Errorf("error does not name the artifact and the failed check: %v", err)
		}
		checkFailedAt(t, res, PhaseDecrypt, "encryption-config.yaml")
	})

	// Last: it adds a backup, which becomes the plan's latest.
	t.Run("partial backup", func(t *testing.T) {
		ctx := testContext(t, time.Minute)
		opts := e.options(t, "control-plane")
		// A partial backup as a manifests source records one when the API
		// server refuses to list a resource (tested in internal/backup):
		// the newest backup's manifest, committed again under a new ID
		// with a skipped source.
		m := e.backups[1]
		id, err := catalog.NewID(m.Plan, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		m.Backup, m.Status = id, catalog.StatusPartial
		m.Skipped = []catalog.Skip{{Source: catalog.SourceManifests, Reason: "secrets/v1: list forbidden for the backup's service account"}}
		if _, err := catalog.Write(ctx, e.store, m); err != nil {
			t.Fatalf("write the partial manifest: %v", err)
		}
		d := *opts.Drill
		d.Spec.Select = config.BackupSelector{ID: m.Backup}
		opts.Drill = &d
		opts.Scratch = failingProvider{}
		res, err := Run(ctx, opts)
		if !errors.Is(err, ErrFailed) || len(res.Checks) == 0 {
			t.Fatalf("err %v, checks %+v", err, res.Checks)
		}
		c := res.Checks[0]
		if c.Name != CheckBackupComplete || c.Outcome != evidence.CheckFail || !strings.Contains(c.Detail, "status partial") ||
			!strings.Contains(c.Detail, "skipped manifests (secrets/v1: list forbidden") {
			t.Fatalf("check %+v", c)
		}
		signer, _ := evidence.LoadOrCreateSigner(filepath.Join(t.TempDir(), "signing.pem"))
		st, err := fs.Open(ctx, fs.Options{Root: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		pub, err := Publish(ctx, res, PublishOptions{Store: st, Signer: signer})
		if err != nil {
			t.Fatal(err)
		}
		sub, _ := json.Marshal(pub.Record.Subject)
		if !strings.Contains(string(sub), `"backupStatus":"partial"`) || !strings.Contains(string(sub), `"skipped":[{"reason":"secrets/v1: list forbidden`) {
			t.Errorf("record subject %s", sub)
		}
	})
}

// failingProvider is a scratch provider whose start fails at once.
type failingProvider struct{}

func (failingProvider) Name() string { return "failing" }

func (failingProvider) Start(context.Context, scratch.Request) (scratch.Cluster, error) {
	return nil, &scratch.StartError{Err: errors.New("restore etcd: test provider refuses")}
}

// checkFailedAt checks a drill that stopped in phase: the phase failed
// naming the artifact, later phases were skipped, RTO was not measured and
// the report still signs.
func checkFailedAt(t *testing.T, res Result, phase, artifact string) {
	t.Helper()
	if res.Verdict != evidence.VerdictFail || res.Err == nil {
		t.Fatalf("verdict %s, err %v", res.Verdict, res.Err)
	}
	if _, ok := res.RTO(); ok {
		t.Error("RTO measured")
	}
	reached := false
	for _, p := range res.Phases {
		switch {
		case p.Name == phase:
			reached = true
			if p.Outcome != evidence.PhaseFailure || !strings.Contains(p.Detail, artifact) {
				t.Errorf("phase %+v", p)
			}
		case reached && p.Outcome != evidence.PhaseSkipped:
			t.Errorf("phase after the failure %+v", p)
		}
	}
	if !strings.Contains(strings.Join(res.Reasons, "\n"), artifact) {
		t.Errorf("reasons do not name %s: %q", artifact, res.Reasons)
	}
	signer, _ := evidence.LoadOrCreateSigner(filepath.Join(t.TempDir(), "signing.pem"))
	if _, _, err := signer.SignReport(res.Report()); err != nil {
		t.Fatalf("sign failed report: %v", err)
	}
}

// corrupt flips a byte of an object in the fs store under dir/store; with
// forge, it also rewrites the object's retention record to match.
func corrupt(t *testing.T, dir, key string, forge bool) {
	t.Helper()
	obj := filepath.Join(dir, "store", "objects", key)
	b, err := os.ReadFile(obj)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x01
	os.Chmod(obj, 0o640)
	if err := os.WriteFile(obj, b, 0o440); err != nil {
		t.Fatal(err)
	}
	if !forge {
		return
	}
	rec := filepath.Join(dir, "store", "retention", key+".json")
	rb, err := os.ReadFile(rec)
	if err != nil {
		t.Fatal(err)
	}
	var r map[string]any
	if err := json.Unmarshal(rb, &r); err != nil {
		t.Fatal(err)
	}
	r["sha256"] = evidence.Hash(b)
	rb, _ = json.Marshal(r)
	os.Chmod(rec, 0o640)
	if err := os.WriteFile(rec, rb, 0o440); err != nil {
		t.Fatal(err)
	}
}

func readObject(t *testing.T, st store.Store, key string) []byte {
	t.Helper()
	rc, err := st.Get(context.Background(), key, store.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return b
}

func phaseNamed(ps []Phase, name string) Phase {
	for _, p := range ps {
		if p.Name == name {
			return p
		}
	}
	return Phase{}
}
