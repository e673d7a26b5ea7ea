package backup_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/backup"
	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/source/velero"
	"github.com/lifeboat-dr/lifeboat/internal/testenv"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
)

// veleroOutcomes are what the test's Velero server does with the backups
// of a plan (by the lifeboat.dev/plan label); other plans' backups
// complete with one warning.
var veleroOutcomes = map[string]velerov1.BackupStatus{
	"velero-partial": {Phase: velerov1.BackupPhasePartiallyFailed, Errors: 2, Warnings: 3},
	"velero-failed":  {Phase: velerov1.BackupPhaseFailed, Errors: 1, FailureReason: "error getting backup storage location: backupstoragelocation.velero.io \"default\" not found"},
	"velero-invalid": {Phase: velerov1.BackupPhaseFailedValidation, ValidationErrors: []string{"an existing backup storage location was not specified at backup creation time and the server default default does not exist"}},
	"velero-stuck":   {Phase: velerov1.BackupPhaseInProgress},
	// Completed, expiring a day before the TTL asked for (as a Velero
	// server whose clock is a day behind would have it).
	"velero-early": {Phase: velerov1.BackupPhaseCompleted},
}

// startVeleroServer plays the Velero server's part in c until the test
// ends: a new Backup goes InProgress (with its storage location, start
// time and expiration set), then, a poll later, to the outcome
// veleroOutcomes gives its plan.
func startVeleroServer(t *testing.T, c *testenv.Cluster) {
	t.Helper()
	dyn, err := dynamic.NewForConfig(adminConfig(c))
	if err != nil {
		t.Fatal(err)
	}
	client := dyn.Resource(velero.BackupResource)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	finished := map[types.UID]bool{}
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			list, err := client.Namespace("").List(ctx, metav1.ListOptions{})
			if err == nil {
				for _, u := range list.Items {
					if finished[u.GetUID()] {
						continue
					}
					var b velerov1.Backup
					if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &b); err != nil {
						t.Errorf("test velero server: %v", err)
						continue
					}
					now := metav1.Now()
					switch b.Status.Phase {
					case "":
						b.Spec.StorageLocation = "default"
						b.Status = velerov1.BackupStatus{Phase: velerov1.BackupPhaseInProgress, StartTimestamp: &now,
							Expiration: &metav1.Time{Time: now.Add(b.Spec.TTL.Duration)}}
					default:
						want, ok := veleroOutcomes[b.Labels[velero.LabelPlan]]
						if !ok {
							want = velerov1.BackupStatus{Phase: velerov1.BackupPhaseCompleted, Warnings: 1}
						}
						if want.Phase == velerov1.BackupPhaseInProgress {
							finished[b.UID] = true
							continue
						}
						want.StartTimestamp, want.Expiration, want.CompletionTimestamp = b.Status.StartTimestamp, b.Status.Expiration, &now
						if b.Labels[velero.LabelPlan] == "velero-early" {
							want.Expiration = &metav1.Time{Time: b.Status.Expiration.Add(-24 * time.Hour)}
						}
						b.Status = want
						finished[b.UID] = true
					}
					obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&b)
					if err != nil {
						t.Errorf("test velero server: %v", err)
						continue
					}
					if _, err := client.Namespace(b.Namespace).Update(ctx, &unstructured.Unstructured{Object: obj}, metav1.UpdateOptions{}); err != nil && ctx.Err() == nil {
						t.Logf("test velero server: update %s/%s: %v", b.Namespace, b.Name, err)
						delete(finished, b.UID)
					}
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
}

// deleteRequests returns the DeleteBackupRequests in ns for the Velero
// Backup of backup (by spec.backupName).
func deleteRequests(t *testing.T, c *testenv.Cluster, ns, backup string) []velerov1.DeleteBackupRequest {
	t.Helper()
	dyn, err := dynamic.NewForConfig(adminConfig(c))
	if err != nil {
		t.Fatal(err)
	}
	list, err := dyn.Resource(velero.DeleteBackupRequestResource).Namespace(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []velerov1.DeleteBackupRequest
	for _, u := range list.Items {
		var r velerov1.DeleteBackupRequest
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &r); err != nil {
			t.Fatal(err)
		}
		if r.Spec.BackupName == velero.Name(backup) {
			out = append(out, r)
		}
	}
	return out
}

// wantDeleteRequest checks that lifeboat asked Velero, once, to delete the
// Velero Backup of backup in ns, naming it by name and UID.
func wantDeleteRequest(t *testing.T, c *testenv.Cluster, ns, backup string, logs *logBuffer) {
	t.Helper()
	reqs := deleteRequests(t, c, ns, backup)
	if len(reqs) != 1 {
		t.Fatalf("%d delete backup requests for %s/%s, want 1\nlogs:\n%s", len(reqs), ns, velero.Name(backup), logs.String())
	}
	dyn, err := dynamic.NewForConfig(adminConfig(c))
	if err != nil {
		t.Fatal(err)
	}
	b, err := dyn.Resource(velero.BackupResource).Namespace(ns).Get(context.Background(), velero.Name(backup), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r := reqs[0]
	if r.Labels[velerov1.BackupNameLabel] != velero.Name(backup) || r.Labels[velerov1.BackupUIDLabel] != string(b.GetUID()) ||
		r.Annotations[velero.AnnotationBackup] != backup {
		t.Errorf("delete backup request %s: labels %v, annotations %v", r.Name, r.Labels, r.Annotations)
	}
}

// TestVelero runs Velero backups through backup.Run against a real
// kube-apiserver with Velero's Backup CRD, the test playing the Velero
// server's part.
func TestVelero(t *testing.T) {
	c := testenv.StartCluster(t)
	testenv.InstallVeleroCRDs(t, c)
	startVeleroServer(t, c)
	k := newKubeObjects(t, c)
	k.namespace("backups")
	dyn, err := dynamic.NewForConfig(adminConfig(c))
	if err != nil {
		t.Fatal(err)
	}

	source := func(timeout time.Duration) config.Source {
		return config.Source{Velero: &config.VeleroSource{Namespace: "backups", IncludeNamespaces: []string{"ehr", "billing"},
			Timeout: config.Duration(timeout)}}
	}

	t.Run("completed", func(t *testing.T) {
		ctx := testContext(t)
		f := newFixture(t)
		var logs logBuffer
		m, err := runBackup(ctx, t, f, kubePlan(c, "velero-ok", source(time.Minute)), &logs, nil)
		if err != nil {
			t.Fatalf("Run: %v\nlogs:\n%s", err, logs.String())
		}
		read, err := catalog.Read(ctx, f.st, m.Backup)
		if err != nil {
			t.Fatal(err)
		}
		v := read.Velero
		if read.Status != catalog.StatusComplete || len(read.Artifacts) != 0 || v == nil || v.Namespace != "backups" ||
			v.Backup != velero.Name(m.Backup) || v.Phase != "Completed" || v.Errors != 0 || v.Warnings != 1 ||
			strings.Join(v.IncludedNamespaces, ",") != "ehr,billing" || v.StorageLocation != "default" ||
			v.Started.IsZero() || v.Completed.IsZero() || v.Expires.IsZero() {
			t.Fatalf("manifest: status %s, velero %+v", read.Status, v)
		}
		u, err := dyn.Resource(velero.BackupResource).Namespace("backups").Get(ctx, v.Backup, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var b velerov1.Backup
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &b); err != nil {
			t.Fatal(err)
		}
		ttl := m.RetainUntil.Sub(m.Started)
		if b.Labels[velero.LabelPlan] != "velero-ok" || b.Labels[velero.LabelBackup] != m.Backup ||
			b.Annotations[velero.AnnotationBackup] != m.Backup ||
			b.Annotations[velero.AnnotationRetainUntil] != m.RetainUntil.Format(time.RFC3339) ||
			b.Spec.TTL.Duration < ttl-time.Second || b.Spec.TTL.Duration > ttl+time.Second ||
			strings.Join(b.Spec.IncludedNamespaces, ",") != "ehr,billing" {
			t.Errorf("velero backup: labels %v, annotations %v, spec %+v; want ttl %s", b.Labels, b.Annotations, b.Spec, ttl)
		}
		if reqs := deleteRequests(t, c, "backups", m.Backup); len(reqs) != 0 {
			t.Errorf("delete backup requests for a committed backup: %+v", reqs)
		}
		if strings.Contains(logs.String(), "expires before the lifeboat backup's retention ends") {
			t.Errorf("logs warn of an early expiry\nlogs:\n%s", logs.String())
		}
	})

	// An expiration before the backup's retention is logged, not fatal.
	t.Run("expiresEarly", func(t *testing.T) {
		ctx := testContext(t)
		f := newFixture(t)
		var logs logBuffer
		m, err := runBackup(ctx, t, f, kubePlan(c, "velero-early", source(time.Minute)), &logs, nil)
		if err != nil {
			t.Fatalf("Run: %v\nlogs:\n%s", err, logs.String())
		}
		if m.Status != catalog.StatusComplete || m.Velero == nil || !m.Velero.Expires.Before(m.RetainUntil) {
			t.Fatalf("manifest: status %s, velero %+v", m.Status, m.Velero)
		}
		if !strings.Contains(logs.String(), `"level":"WARN","msg":"velero backup expires before the lifeboat backup's retention ends`) {
			t.Errorf("logs lack the early expiry warning\nlogs:\n%s", logs.String())
		}
	})

	t.Run("partiallyFailed", func(t *testing.T) {
		ctx := testContext(t)
		f := newFixture(t)
		var logs logBuffer
		m, err := runBackup(ctx, t, f, kubePlan(c, "velero-partial", source(time.Minute)), &logs, nil)
		if err != nil {
			t.Fatalf("Run: %v\nlogs:\n%s", err, logs.String())
		}
		if m.Status != catalog.StatusPartial || len(m.Skipped) != 1 || m.Skipped[0].Source != "velero" ||
			!strings.Contains(m.Skipped[0].Reason, "backups/"+velero.Name(m.Backup)) || !strings.Contains(m.Skipped[0].Reason, "PartiallyFailed with 2 errors") {
			t.Fatalf("manifest: status %s, skipped %+v", m.Status, m.Skipped)
		}
		if m.Velero == nil || m.Velero.Phase != "PartiallyFailed" || m.Velero.Errors != 2 || m.Velero.Warnings != 3 {
			t.Fatalf("velero: %+v", m.Velero)
		}
		if !committed(t, f.st, m.Backup) {
			t.Fatal("not committed")
		}
	})

	for _, tc := range []struct {
		name, plan string
		timeout    time.Duration
		is         error
		want       []string
	}{
		{"failed", "velero-failed", time.Minute, velero.ErrFailed, []string{": Failed (1 errors)", `backupstoragelocation.velero.io "default" not found`}},
		{"failedValidation", "velero-invalid", time.Minute, velero.ErrFailed, []string{"FailedValidation", "server default default does not exist"}},
		{"timeout", "velero-stuck", 2 * time.Second, velero.ErrTimeout, []string{"still InProgress after 2s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testContext(t)
			f := newFixture(t)
			var logs logBuffer
			_, err := runBackup(ctx, t, f, kubePlan(c, tc.plan, source(tc.timeout)), &logs, nil)
			var rerr *backup.RunError
			if !errors.As(err, &rerr) || rerr.Step != config.SourceVelero || !errors.Is(err, tc.is) ||
				!strings.Contains(err.Error(), "backups/"+velero.Name(rerr.Backup)) {
				t.Fatalf("Run: %v\nlogs:\n%s", err, logs.String())
			}
			t.Logf("Run: %v", err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if committed(t, f.st, rerr.Backup) {
				t.Error("a failed backup was committed")
			}
			// Nothing refers to the Velero Backup: lifeboat asks Velero to
			// delete it (Velero refuses while it is in progress; logged).
			wantDeleteRequest(t, c, "backups", rerr.Backup, &logs)
			if tc.is == velero.ErrTimeout && !strings.Contains(logs.String(), "Velero refuses to delete a backup still in progress") {
				t.Errorf("logs lack the in-progress warning\nlogs:\n%s", logs.String())
			}
		})
	}

	// Discard deletes only the Velero Backup it is given, by UID and
	// lifeboat annotation.
	t.Run("discardChecksIdentity", func(t *testing.T) {
		ctx := testContext(t)
		f := newFixture(t)
		var logs logBuffer
		m, err := runBackup(ctx, t, f, kubePlan(c, "velero-keep", source(time.Minute)), &logs, nil)
		if err != nil {
			t.Fatalf("Run: %v\nlogs:\n%s", err, logs.String())
		}
		u, err := dyn.Resource(velero.BackupResource).Namespace("backups").Get(ctx, velero.Name(m.Backup), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			ref    velero.Ref
			backup string
		}{
			{velero.Ref{Namespace: "backups", Name: u.GetName(), UID: "not-its-uid"}, m.Backup},
			{velero.Ref{Namespace: "backups", Name: u.GetName(), UID: u.GetUID()}, m.Backup + "-other"},
			{velero.Ref{Namespace: "backups", Name: "never-existed", UID: u.GetUID()}, m.Backup},
		} {
			if err := velero.Discard(ctx, adminConfig(c), tc.ref, tc.backup, nil); err != nil {
				t.Errorf("Discard(%+v, %s): %v", tc.ref, tc.backup, err)
			}
		}
		if reqs := deleteRequests(t, c, "backups", m.Backup); len(reqs) != 0 {
			t.Errorf("delete backup requests: %+v", reqs)
		}
	})
}
