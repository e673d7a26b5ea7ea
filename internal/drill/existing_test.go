package drill

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/lifeboat-dr/lifeboat/internal/backup"
	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/kube"
	"github.com/lifeboat-dr/lifeboat/internal/scratch"
	"github.com/lifeboat-dr/lifeboat/internal/scratch/kubeconfig"
	"github.com/lifeboat-dr/lifeboat/internal/testenv"
)

const existingConfig = storeAndKeys + `
apiVersion: lifeboat.dev/v1alpha1
kind: BackupPlan
metadata: {name: apps}
spec:
  store: test-store
  keyProvider: test-keys
  retention: 1d
  cluster: {kubeconfig: %[3]q}
  sources:
    - manifests: {excludeResources: [events, events.events.k8s.io]}
    - volumes: {namespaces: [ehr], timeout: 1m}
    - velero: {namespace: velero, includeNamespaces: [ehr], timeout: 1m}
---
apiVersion: lifeboat.dev/v1alpha1
kind: Drill
metadata: {name: apps-in-staging}
spec:
  backupPlan: apps
  select: {latest: true}
  scratch: {type: kubeconfig, kubeconfig: %[4]q}
  checks:
    - manifests: {}
    - http:
        items:
          - {url: "%[5]s/healthz/{namespace:ehr}?token=not-in-the-report", timeout: 20s}
    - job:
        items:
          - {name: db-ready, namespace: ehr, image: postgres:16, command: [pg_isready, -h, db], timeout: 1m}
  targets: {rto: 15m, rpo: 1h}
`

// TestDrillIntoExistingCluster drills into a second real kube-apiserver
// named by a kubeconfig (scratch type kubeconfig): the export's namespaced
// objects go into namespaces of the run, marked; the drill waits for the
// restored Deployments to be ready and runs the http and job consistency
// checks (the test plays the controllers and the application, which cannot
// run here: no kubelet); everything the drill made, and only that, is
// deleted afterwards; a decoy with the run's label but not its run ID is
// left alone.
func TestDrillIntoExistingCluster(t *testing.T) {
	ctx := testContext(t, 5*time.Minute)
	src := testenv.StartCluster(t)
	seed(t, ctx, scratch.Access{Server: src.Server, Client: src.Client()})
	target := testenv.StartCluster(t)
	for _, c := range []*testenv.Cluster{src, target} {
		testenv.InstallSnapshotCRDs(t, c)
		testenv.InstallVeleroCRDs(t, c)
		testenv.PlaySnapshots(ctx, t, c)
	}
	srcDC, err := dynamic.NewForConfig(src.RESTConfig(src.Token))
	if err != nil {
		t.Fatal(err)
	}
	for _, obj := range []map[string]any{
		{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": "velero"}},
		{"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": map[string]any{"name": "db", "namespace": "ehr"},
			"spec": map[string]any{"accessModes": []any{"ReadWriteOnce"}, "storageClassName": "fast-ssd",
				"resources": map[string]any{"requests": map[string]any{"storage": "5Gi"}}}},
	} {
		u := &unstructured.Unstructured{Object: obj}
		gvr := gvrNamespaces
		if u.GetKind() == "PersistentVolumeClaim" {
			gvr = gvrClaims
		}
		if _, err := srcDC.Resource(gvr).Namespace(u.GetNamespace()).Create(ctx, u, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// The source's Velero server: every Backup completes.
	go playVelero(ctx, srcDC, schema.GroupVersionResource{Group: "velero.io", Version: "v1", Resource: "backups"}, func(u *unstructured.Unstructured) {
		now := time.Now().UTC()
		ttl, _ := time.ParseDuration(fmt.Sprint(u.Object["spec"].(map[string]any)["ttl"]))
		unstructured.SetNestedField(u.Object, "default", "spec", "storageLocation")
		u.Object["status"] = map[string]any{"phase": "Completed", "startTimestamp": now.Format(time.RFC3339),
			"completionTimestamp": now.Format(time.RFC3339), "expiration": now.Add(ttl).Format(time.RFC3339)}
	})
	dir := t.TempDir()
	srcKC, targetKC := filepath.Join(dir, "source.kubeconfig"), filepath.Join(dir, "target.kubeconfig")
	if err := src.WriteKubeconfig(srcKC, "admin", src.Token); err != nil {
		t.Fatal(err)
	}
	if err := target.WriteKubeconfig(targetKC, "admin", target.Token); err != nil {
		t.Fatal(err)
	}
	const runID = "apps-in-staging-20261205T000000Z-test"
	const oldRun, otherRun = "apps-in-staging-20261101T000000Z-0a0a", "other-drill-20261101T000000Z-0b0b"
	ehr := DrillNamespace(runID, "ehr")
	// The application: answers 200 only when asked about the restored
	// copy of ehr.
	var (
		mu    sync.Mutex
		asked []string
	)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		asked = append(asked, r.URL.Path)
		mu.Unlock()
		if r.URL.Path != "/healthz/"+ehr {
			http.Error(w, "wrong namespace", http.StatusNotFound)
		}
	}))
	defer app.Close()

	e := configuredEnv(t, ctx, dir, kubeconfig.Provider{Kubeconfig: targetKC}, existingConfig, srcKC, targetKC, app.URL)
	set := e.set
	plan, _ := set.BackupPlan("apps")
	if _, err := backup.Run(ctx, backup.Options{Plan: plan, Store: e.store, Keys: e.keys}); err != nil {
		t.Fatal(err)
	}

	rc, err := kube.Config(kube.Options{Kubeconfig: targetKC})
	if err != nil {
		t.Fatal(err)
	}
	dc, err := dynamic.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	// A decoy that carries the run's label but not its run ID, and the
	// target's own ehr namespace, which the drill must not touch.
	for _, ns := range []map[string]any{
		{"name": "lbdrill-decoy", "labels": map[string]any{LabelDrillRun: runLabel(runID)}},
		{"name": "ehr", "labels": map[string]any{"owner": "staging"}},
		{"name": "velero"},
		// Left by an earlier run of this drill, and by another drill's.
		{"name": "lbdrill-old-ehr", "labels": map[string]any{LabelDrillRun: runLabel(oldRun)}, "annotations": map[string]any{AnnotationDrillRun: oldRun}},
		{"name": "lbdrill-other-ehr", "labels": map[string]any{LabelDrillRun: runLabel(otherRun)}, "annotations": map[string]any{AnnotationDrillRun: otherRun}},
	} {
		obj := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": ns}}
		if _, err := dc.Resource(gvrNamespaces).Create(ctx, obj, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	// The controllers: restored Deployments become ready, the check's Job
	// completes.
	playCtx, stopPlaying := context.WithCancel(ctx)
	defer stopPlaying()
	var played sync.WaitGroup
	played.Go(func() {
		sel := metav1.ListOptions{LabelSelector: LabelDrillRun + "=" + runLabel(runID)}
		for playCtx.Err() == nil {
			// A List that fails (the test is ending) lists nothing.
			for _, d := range listed(dc.Resource(gvrDeployments).Namespace("").List(playCtx, sel)) {
				if ready, _, _ := unstructured.NestedInt64(d.Object, "status", "readyReplicas"); ready > 0 {
					continue
				}
				want, found, _ := unstructured.NestedInt64(d.Object, "spec", "replicas")
				if !found {
					want = 1
				}
				d.Object["status"] = map[string]any{"observedGeneration": d.GetGeneration(), "replicas": want, "readyReplicas": want, "availableReplicas": want, "updatedReplicas": want}
				dc.Resource(gvrDeployments).Namespace(d.GetNamespace()).UpdateStatus(playCtx, &d, metav1.UpdateOptions{})
			}
			for _, c := range listed(dc.Resource(gvrClaims).Namespace("").List(playCtx, sel)) {
				if phase, _, _ := unstructured.NestedString(c.Object, "status", "phase"); phase != "Bound" {
					c.Object["status"] = map[string]any{"phase": "Bound"}
					dc.Resource(gvrClaims).Namespace(c.GetNamespace()).UpdateStatus(playCtx, &c, metav1.UpdateOptions{})
				}
			}
			for _, j := range listed(dc.Resource(gvrJobs).Namespace("").List(playCtx, sel)) {
				if _, found, _ := unstructured.NestedSlice(j.Object, "status", "conditions"); found {
					continue
				}
				now := time.Now().UTC().Format(time.RFC3339)
				j.Object["status"] = map[string]any{"startTime": now, "completionTime": now, "succeeded": int64(1),
					"conditions": []any{
						map[string]any{"type": "SuccessCriteriaMet", "status": "True", "lastProbeTime": now, "lastTransitionTime": now},
						map[string]any{"type": "Complete", "status": "True", "lastProbeTime": now, "lastTransitionTime": now},
					}}
				if _, err := dc.Resource(gvrJobs).Namespace(j.GetNamespace()).UpdateStatus(playCtx, &j, metav1.UpdateOptions{}); err != nil {
					t.Logf("play the job controller: %v", err)
				}
			}
			time.Sleep(200 * time.Millisecond)
		}
	})

	// The target's Velero server: the drill's Restore completes, having
	// been asked to map ehr into the run's namespace.
	var veleroMapping string
	go playVelero(playCtx, dc, gvrVeleroRestores, func(u *unstructured.Unstructured) {
		m, _, _ := unstructured.NestedStringMap(u.Object, "spec", "namespaceMapping")
		mu.Lock()
		veleroMapping = m["ehr"]
		mu.Unlock()
		u.Object["status"] = map[string]any{"phase": "Completed", "warnings": int64(1)}
	})
	opts := e.options(t, "apps-in-staging")
	opts.RunID = runID
	// Everything an earlier run left is old enough to sweep, here.
	defer func(age time.Duration) { StaleDrillAge = age }(StaleDrillAge)
	StaleDrillAge = -opts.Drill.Spec.Timeout.Std()
	res, err := Run(ctx, opts)
	stopPlaying()
	played.Wait()
	if err != nil {
		t.Fatalf("drill: %v\nchecks: %+v", err, res.Checks)
	}
	var order []string
	for _, p := range res.Phases {
		if p.Outcome != evidence.PhaseSkipped {
			order = append(order, p.Name)
		}
	}
	if want := []string{PhaseSelect, PhaseFetch, PhaseDecrypt, kubeconfig.PhaseConnect, PhaseRestoreManifests, PhaseRestoreVolumes, PhaseRestoreVelero, PhaseAppReady, PhaseVerify}; !slices.Equal(order, want) {
		t.Errorf("phases run %v, want %v", order, want)
	}
	checks := map[string]evidence.Check{}
	for _, c := range res.Checks {
		checks[c.Name] = c
	}
	if c := checks[config.CheckManifests]; c.Outcome != evidence.CheckPass || !strings.Contains(c.Detail, "namespaces of this run in the existing scratch cluster") ||
		!strings.Contains(c.Detail, "Deployment.apps 2/2") || strings.Contains(c.Detail, "ClusterRole") {
		t.Errorf("manifests check: %+v", c)
	}
	if c := checks[CheckVolumesBound]; c.Outcome != evidence.CheckPass || !strings.Contains(c.Detail, "1 claims restored from their recorded snapshots and Bound: "+ehr+"/db") {
		t.Errorf("volumes check: %+v", c)
	}
	if c := checks[CheckVelero]; c.Outcome != evidence.CheckPass || !strings.Contains(c.Detail, "Completed (0 errors, 1 warnings)") || veleroMapping != ehr {
		t.Errorf("velero check: %+v (ehr mapped to %q)", c, veleroMapping)
	}
	if c := checks[config.CheckHTTP]; c.Outcome != evidence.CheckPass || !strings.Contains(c.Detail, "/healthz/"+ehr+": 200") || strings.Contains(c.Detail, "token") {
		t.Errorf("http check: %+v", c)
	}
	if c := checks[config.CheckJob]; c.Outcome != evidence.CheckPass || !strings.Contains(c.Detail, "db-ready: Job "+ehr+"/lbdrill-check-db-ready completed") {
		t.Errorf("job check: %+v", c)
	}

	// Only what the drill made is deleted (the namespaces are Terminating:
	// no namespace controller runs here to finish the job).
	get := func(name string) *unstructured.Unstructured {
		u, err := dc.Resource(gvrNamespaces).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("namespace %s: %v", name, err)
		}
		return u
	}
	for _, ns := range []string{ehr, DrillNamespace(runID, "billing"), "lbdrill-old-ehr"} {
		if get(ns).GetDeletionTimestamp() == nil {
			t.Errorf("namespace %s the drill made is not being deleted", ns)
		}
	}
	for _, ns := range []string{"lbdrill-decoy", "lbdrill-other-ehr", "ehr", "default"} {
		if get(ns).GetDeletionTimestamp() != nil {
			t.Errorf("namespace %s, not the drill's, is being deleted", ns)
		}
	}
	if l, err := dc.Resource(gvrContents).List(ctx, metav1.ListOptions{}); err != nil || len(l.Items) != 0 {
		t.Errorf("VolumeSnapshotContents left (%v), want the drill's deleted", err)
	}
	if l, err := dc.Resource(gvrVeleroRestores).Namespace("velero").List(ctx, metav1.ListOptions{}); err != nil || len(l.Items) != 0 {
		t.Errorf("Velero Restores left (%v), want the drill's deleted", err)
	}
	if _, err := dc.Resource(gvrClusterRoles).Get(ctx, "ehr-reader", metav1.GetOptions{}); err == nil {
		t.Error("the drill restored a cluster-scoped ClusterRole into the existing cluster")
	}
}

// playVelero plays a Velero server for one resource until ctx ends: each
// object without a status phase is finished by finish and updated.
func playVelero(ctx context.Context, dc dynamic.Interface, gvr schema.GroupVersionResource, finish func(*unstructured.Unstructured)) {
	for ctx.Err() == nil {
		list, err := dc.Resource(gvr).Namespace("").List(ctx, metav1.ListOptions{})
		if err == nil {
			for i := range list.Items {
				u := &list.Items[i]
				if phase, _, _ := unstructured.NestedString(u.Object, "status", "phase"); phase != "" {
					continue
				}
				finish(u)
				dc.Resource(gvr).Namespace(u.GetNamespace()).Update(ctx, u, metav1.UpdateOptions{})
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestDrillNamespace: the docs/format.md §5.6.1 vector, and a long source
// namespace cut to a valid, distinct name.
func TestDrillNamespace(t *testing.T) {
	const run = "apps-in-staging-20261205T000000Z-test"
	if got := runLabel(run); got != "95f29f62d0ae80f2" {
		t.Errorf("runLabel = %s", got)
	}
	if got := DrillNamespace(run, "ehr"); got != "lbdrill-95f29f62-ehr" {
		t.Errorf("DrillNamespace(ehr) = %s", got)
	}
	a, b := DrillNamespace(run, strings.Repeat("a", 60)+"x"), DrillNamespace(run, strings.Repeat("a", 60)+"y")
	if len(a) > 63 || len(b) > 63 || a == b || !strings.HasPrefix(a, "lbdrill-95f29f62-aaa") {
		t.Errorf("long namespaces: %s, %s", a, b)
	}
}

// listed is a List's items, none when it failed.
func listed(l *unstructured.UnstructuredList, err error) []unstructured.Unstructured {
	if err != nil {
		return nil
	}
	return l.Items
}
