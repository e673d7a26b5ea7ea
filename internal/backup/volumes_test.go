package backup_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned/typed/volumesnapshot/v1"
	"github.com/lifeboat-dr/lifeboat/internal/backup"
	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/source/volumes"
	"github.com/lifeboat-dr/lifeboat/internal/store"
	"github.com/lifeboat-dr/lifeboat/internal/testenv"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
)

// snapshotBehaviour is the annotation on a PersistentVolumeClaim that tells
// the test's snapshot controller what to do with snapshots of it.
const snapshotBehaviour = "test.lifeboat.dev/snapshot"

// Behaviours of the test's snapshot controller.
const (
	snapReady = "ready" // bind a content, then become ready
	snapError = "error" // report status.error
	snapNever = "never" // do nothing
)

// snapErrorMessage is what the test's controller reports for snapError.
const snapErrorMessage = "failed to take snapshot of the volume: rpc error: code = Internal desc = backend unavailable"

// testDriver is the CSI driver the test's controller claims to be.
const testDriver = "hostpath.csi.k8s.io"

func adminConfig(c *testenv.Cluster) *rest.Config {
	return &rest.Config{Host: c.Server, BearerToken: c.Token, TLSClientConfig: rest.TLSClientConfig{CAFile: c.CAFile},
		QPS: 100, Burst: 200}
}

// snapshotController is the test's snapshot controller.
type snapshotController struct {
	// hold, when set, keeps a bound snapshot from becoming ready while it
	// returns true.
	hold atomic.Pointer[func(*snapv1.VolumeSnapshot) bool]
}

// holdBound keeps each snapshot bound but not ready until hold returns
// false for it, until the test ends.
func (sc *snapshotController) holdBound(t *testing.T, hold func(*snapv1.VolumeSnapshot) bool) {
	sc.hold.Store(&hold)
	t.Cleanup(func() { sc.hold.Store(nil) })
}

// startSnapshotController plays the external-snapshotter's part in c until
// the test ends: for each new VolumeSnapshot of a claim annotated with
// snapshotBehaviour, it creates a VolumeSnapshotContent with a snapshot
// handle and the claim's requested size, binds the snapshot to it (not
// ready), then, a poll later (or once holdBound's function lets it), marks
// it ready; or it reports an error; or it does nothing.
func startSnapshotController(t *testing.T, c *testenv.Cluster) *snapshotController {
	t.Helper()
	cfg := adminConfig(c)
	snaps, err := snapclient.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	core, err := corev1client.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	state := map[types.UID]string{}
	sc := &snapshotController{}
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			list, err := snaps.VolumeSnapshots("").List(ctx, metav1.ListOptions{})
			if err == nil {
				for i := range list.Items {
					if err := sc.step(ctx, snaps, core, &list.Items[i], state); err != nil && ctx.Err() == nil {
						t.Logf("test snapshot controller: %s/%s: %v", list.Items[i].Namespace, list.Items[i].Name, err)
					}
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return sc
}

func (sc *snapshotController) step(ctx context.Context, snaps snapclient.SnapshotV1Interface, core corev1client.CoreV1Interface, vs *snapv1.VolumeSnapshot, state map[types.UID]string) error {
	if vs.Spec.Source.PersistentVolumeClaimName == nil || state[vs.UID] == "done" {
		return nil
	}
	claim := *vs.Spec.Source.PersistentVolumeClaimName
	pvc, err := core.PersistentVolumeClaims(vs.Namespace).Get(ctx, claim, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		state[vs.UID] = "done"
		return nil
	}
	if err != nil {
		return err
	}
	now := metav1.Now()
	switch pvc.Annotations[snapshotBehaviour] {
	case snapError:
		vs.Status = &snapv1.VolumeSnapshotStatus{Error: &snapv1.VolumeSnapshotError{Time: &now, Message: ptr(snapErrorMessage)}}
		if _, err := snaps.VolumeSnapshots(vs.Namespace).UpdateStatus(ctx, vs, metav1.UpdateOptions{}); err != nil {
			return err
		}
		state[vs.UID] = "done"
	case snapReady:
		size := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
		contentName := "snapcontent-" + string(vs.UID)
		if state[vs.UID] == "" {
			vsc := &snapv1.VolumeSnapshotContent{
				ObjectMeta: metav1.ObjectMeta{Name: contentName},
				Spec: snapv1.VolumeSnapshotContentSpec{
					VolumeSnapshotRef: corev1.ObjectReference{Kind: "VolumeSnapshot", APIVersion: "snapshot.storage.k8s.io/v1",
						Namespace: vs.Namespace, Name: vs.Name, UID: vs.UID},
					DeletionPolicy:          snapv1.VolumeSnapshotContentDelete,
					Driver:                  testDriver,
					VolumeSnapshotClassName: vs.Spec.VolumeSnapshotClassName,
					Source:                  snapv1.VolumeSnapshotContentSource{VolumeHandle: ptr("pv-" + vs.Namespace + "-" + claim)},
				},
			}
			vsc, err := snaps.VolumeSnapshotContents().Create(ctx, vsc, metav1.CreateOptions{})
			if err != nil {
				return err
			}
			vsc.Status = &snapv1.VolumeSnapshotContentStatus{
				SnapshotHandle: ptr("snap-" + vs.Namespace + "-" + claim), RestoreSize: ptr(size.Value()),
				ReadyToUse: ptr(true), CreationTime: ptr(now.UnixNano()),
			}
			if _, err := snaps.VolumeSnapshotContents().UpdateStatus(ctx, vsc, metav1.UpdateOptions{}); err != nil {
				return err
			}
			vs.Status = &snapv1.VolumeSnapshotStatus{BoundVolumeSnapshotContentName: &contentName, ReadyToUse: ptr(false), CreationTime: &now}
			if _, err := snaps.VolumeSnapshots(vs.Namespace).UpdateStatus(ctx, vs, metav1.UpdateOptions{}); err != nil {
				return err
			}
			state[vs.UID] = "bound"
			return nil
		}
		if hold := sc.hold.Load(); hold != nil && (*hold)(vs) {
			return nil
		}
		vs.Status.ReadyToUse = ptr(true)
		vs.Status.RestoreSize = &size
		if _, err := snaps.VolumeSnapshots(vs.Namespace).UpdateStatus(ctx, vs, metav1.UpdateOptions{}); err != nil {
			return err
		}
		state[vs.UID] = "done"
	default:
		state[vs.UID] = "done"
	}
	return nil
}

func ptr[T any](v T) *T { return &v }

// kubeObjects creates namespaces and claims through the API.
type kubeObjects struct {
	t     *testing.T
	core  corev1client.CoreV1Interface
	snaps snapclient.SnapshotV1Interface
}

func newKubeObjects(t *testing.T, c *testenv.Cluster) *kubeObjects {
	cfg := adminConfig(c)
	core, err := corev1client.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	snaps, err := snapclient.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &kubeObjects{t: t, core: core, snaps: snaps}
}

func (k *kubeObjects) namespace(name string) {
	k.t.Helper()
	_, err := k.core.Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		k.t.Fatal(err)
	}
}

// claim creates a Pending claim of size with the snapshot behaviour and
// labels.
func (k *kubeObjects) claim(ns, name, size, behaviour string, labels map[string]string) {
	k.t.Helper()
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels,
			Annotations: map[string]string{snapshotBehaviour: behaviour}},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}},
		},
	}
	if _, err := k.core.PersistentVolumeClaims(ns).Create(context.Background(), pvc, metav1.CreateOptions{}); err != nil {
		k.t.Fatal(err)
	}
}

// snapshot creates a VolumeSnapshot as if an earlier backup (or someone
// else) had, of a claim that no longer exists.
func (k *kubeObjects) snapshot(ns, name string, labels, annotations map[string]string) {
	k.t.Helper()
	vs := &snapv1.VolumeSnapshot{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels, Annotations: annotations},
		Spec:       snapv1.VolumeSnapshotSpec{Source: snapv1.VolumeSnapshotSource{PersistentVolumeClaimName: ptr("gone")}},
	}
	if _, err := k.snaps.VolumeSnapshots(ns).Create(context.Background(), vs, metav1.CreateOptions{}); err != nil {
		k.t.Fatal(err)
	}
}

// snapshots lists the VolumeSnapshot names in ns.
func (k *kubeObjects) snapshots(ns string) []string {
	k.t.Helper()
	list, err := k.snaps.VolumeSnapshots(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		k.t.Fatal(err)
	}
	var names []string
	for _, vs := range list.Items {
		names = append(names, vs.Name)
	}
	slices.Sort(names)
	return names
}

func kubePlan(c *testenv.Cluster, name string, sources ...config.Source) *config.BackupPlan {
	p := plan(name, sources...)
	p.Spec.Cluster = &config.ClusterRef{Kubeconfig: c.Kubeconfig}
	return p
}

// logBuffer is a goroutine-safe log sink.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func runBackup(ctx context.Context, t *testing.T, f fixture, p *config.BackupPlan, logs *logBuffer, now func() time.Time) (catalog.Manifest, error) {
	t.Helper()
	return backup.Run(ctx, backup.Options{Plan: p, Store: f.st, Keys: f.keyring, Version: "test", Now: now,
		Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
}

// committed reports whether the store holds a manifest for id.
func committed(t *testing.T, st store.Store, id string) bool {
	t.Helper()
	for _, k := range objects(t, st) {
		if k == catalog.ManifestKey(id) {
			return true
		}
	}
	return false
}

// TestVolumes takes CSI VolumeSnapshots through backup.Run against a real
// kube-apiserver with the external-snapshotter CRDs, the test playing the
// snapshot controller's part.
func TestVolumes(t *testing.T) {
	c := testenv.StartCluster(t)
	testenv.InstallSnapshotCRDs(t, c)
	testenv.InstallVeleroCRDs(t, c)
	sc := startSnapshotController(t, c)
	startVeleroServer(t, c)
	k := newKubeObjects(t, c)
	k.namespace("velero")

	t.Run("happy", func(t *testing.T) {
		ctx := testContext(t)
		for _, ns := range []string{"ehr", "billing", "other"} {
			k.namespace(ns)
		}
		sel := map[string]string{"lifeboat.dev/backup-volume": "yes"}
		k.claim("ehr", "db", "2Gi", snapReady, sel)
		k.claim("ehr", "logs", "512Mi", snapReady, sel)
		k.claim("ehr", "cache", "1Gi", snapError, nil) // not selected: no label
		k.claim("billing", "ledger", "3Gi", snapReady, sel)
		k.claim("other", "data", "1Gi", snapError, sel) // not selected: namespace

		// Earlier VolumeSnapshots in the selected namespaces. The store
		// holds no manifest of their backups, and the API server created
		// them just now: whatever their annotations say, they are kept a
		// whole retention (retentionOfOwnSnapshots expires them later).
		now := time.Now()
		planLabels := map[string]string{volumes.LabelPlan: "ehr-nightly", volumes.LabelBackup: "ehr-nightly-old"}
		until := func(d time.Duration) map[string]string {
			return map[string]string{volumes.AnnotationRetainUntil: now.Add(d).UTC().Format(time.RFC3339)}
		}
		of := func(backup string, d time.Duration) map[string]string {
			a := until(d)
			a[volumes.AnnotationBackup] = backup
			return a
		}
		const (
			oldBackup    = "ehr-nightly-20261120T020000Z-0001"
			oldBackupToo = "ehr-nightly-20261121T020000Z-0002"
		)
		oldExpired, oldExpiredToo := volumes.SnapshotName(oldBackup, "gone"), volumes.SnapshotName(oldBackupToo, "gone")
		k.snapshot("ehr", oldExpired, planLabels, of(oldBackup, -time.Hour))
		k.snapshot("billing", oldExpiredToo, planLabels, of(oldBackupToo, -time.Minute))
		k.snapshot("ehr", "old-unexpired", planLabels, until(time.Hour))
		k.snapshot("ehr", "old-no-annotation", planLabels, nil)
		k.snapshot("ehr", "old-bad-annotation", planLabels, map[string]string{volumes.AnnotationRetainUntil: "next tuesday"})
		k.snapshot("ehr", "old-misnamed", planLabels, of(oldBackup, -time.Hour))
		k.snapshot("ehr", "old-expired-no-backup", planLabels, until(-time.Hour))
		k.snapshot("ehr", "other-plan-expired", map[string]string{volumes.LabelPlan: "other-plan"}, until(-time.Hour))
		k.snapshot("ehr", "not-lifeboat", nil, until(-time.Hour))
		k.snapshot("other", "old-expired-unselected-ns", planLabels, until(-time.Hour))

		f := newFixture(t)
		var logs logBuffer
		p := kubePlan(c, "ehr-nightly",
			config.Source{Volumes: &config.VolumesSource{Namespaces: []string{"ehr", "billing"},
				LabelSelector: "lifeboat.dev/backup-volume=yes", SnapshotClass: "csi-hostpath-snapclass",
				Timeout: config.Duration(time.Minute)}},
			config.Source{Velero: &config.VeleroSource{IncludeNamespaces: []string{"ehr"}, Timeout: config.Duration(time.Minute)}},
		)
		// Each snapshot stays bound, not ready, until lifeboat has logged
		// seeing it so.
		sc.holdBound(t, func(vs *snapv1.VolumeSnapshot) bool {
			return !strings.Contains(logs.String(), `"state":"bound to content snapcontent-`+string(vs.UID)+`, not ready to use"`)
		})
		m, err := runBackup(ctx, t, f, p, &logs, nil)
		if err != nil {
			t.Fatalf("Run: %v\nlogs:\n%s", err, logs.String())
		}
		if m.Status != catalog.StatusComplete || len(m.Skipped) != 0 || len(m.Artifacts) != 0 {
			t.Fatalf("manifest: status %s, skipped %+v, artifacts %+v", m.Status, m.Skipped, m.Artifacts)
		}
		read, err := catalog.Read(ctx, f.st, m.Backup)
		if err != nil {
			t.Fatal(err)
		}
		v := read.Volumes
		if v == nil || v.SnapshotClass != "csi-hostpath-snapclass" || len(v.Snapshots) != 3 {
			t.Fatalf("volumes section: %+v", v)
		}
		want := []struct {
			ns, claim string
			size      int64
		}{{"billing", "ledger", 3 << 30}, {"ehr", "db", 2 << 30}, {"ehr", "logs", 512 << 20}}
		for i, w := range want {
			s := v.Snapshots[i]
			if s.Namespace != w.ns || s.Claim != w.claim || s.Snapshot != volumes.SnapshotName(m.Backup, w.claim) ||
				s.Handle != "snap-"+w.ns+"-"+w.claim || s.Driver != testDriver || !strings.HasPrefix(s.Content, "snapcontent-") ||
				s.RestoreSize != w.size || s.ReadyAt.IsZero() || s.Error != "" {
				t.Errorf("snapshots[%d] = %+v, want %s/%s of %d bytes", i, s, w.ns, w.claim, w.size)
			}
		}
		if len(v.Expired) != 0 {
			t.Errorf("expired = %v, want none", v.Expired)
		}
		if got := k.snapshots("billing"); !slices.Contains(got, oldExpiredToo) {
			t.Errorf("snapshots left in billing: %v, want %s among them", got, oldExpiredToo)
		}
		wantLeft := []string{volumes.SnapshotName(m.Backup, "db"), volumes.SnapshotName(m.Backup, "logs"), oldExpired,
			"not-lifeboat", "old-bad-annotation", "old-expired-no-backup", "old-misnamed", "old-no-annotation",
			"old-unexpired", "other-plan-expired"}
		slices.Sort(wantLeft)
		if got := strings.Join(k.snapshots("ehr"), ","); got != strings.Join(wantLeft, ",") {
			t.Errorf("snapshots left in ehr: %s", got)
		}
		if got := k.snapshots("other"); len(got) != 1 || got[0] != "old-expired-unselected-ns" {
			t.Errorf("snapshots left in other: %v", got)
		}
		// The snapshot objects carry the plan, the backup and the retention.
		vs, err := k.snaps.VolumeSnapshots("ehr").Get(ctx, v.Snapshots[1].Snapshot, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if vs.Labels[volumes.LabelPlan] != "ehr-nightly" || vs.Labels[volumes.LabelBackup] != m.Backup ||
			vs.Annotations[volumes.AnnotationBackup] != m.Backup ||
			vs.Annotations[volumes.AnnotationRetainUntil] != m.RetainUntil.UTC().Format(time.RFC3339) ||
			vs.Spec.VolumeSnapshotClassName == nil || *vs.Spec.VolumeSnapshotClassName != "csi-hostpath-snapclass" {
			t.Errorf("volume snapshot metadata: labels %v, annotations %v, class %v", vs.Labels, vs.Annotations, vs.Spec.VolumeSnapshotClassName)
		}
		// Velero ran alongside.
		if read.Velero == nil || read.Velero.Phase != "Completed" || read.Velero.Namespace != "velero" ||
			read.Velero.Backup != strings.ToLower(m.Backup) || read.Velero.Warnings != 1 ||
			strings.Join(read.Velero.IncludedNamespaces, ",") != "ehr" || read.Velero.StorageLocation != "default" ||
			read.Velero.Started.IsZero() || read.Velero.Completed.Before(read.Velero.Started) {
			t.Errorf("velero section: %+v", read.Velero)
		}
		for _, want := range []string{`"msg":"volume snapshot created"`, `"msg":"volume snapshot waiting"`, `"state":"bound to content`,
			`"msg":"volume snapshot ready"`, `no retain-until annotation; kept`,
			`unparseable retain-until annotation; kept`, `"msg":"velero backup phase"`,
			`never committed to this store: kept a full retention from its creation`,
			`not named for the backup its annotation names; kept`, `"snapshotBackup":"` + oldBackup} {
			if !strings.Contains(logs.String(), want) {
				t.Errorf("logs lack %s", want)
			}
		}
		if t.Failed() {
			t.Logf("logs:\n%s", logs.String())
		}
	})

	t.Run("errorFail", func(t *testing.T) {
		ctx := testContext(t)
		k.namespace("errfail")
		k.claim("errfail", "a-ok", "1Gi", snapReady, nil)
		k.claim("errfail", "b-broken", "1Gi", snapError, nil)
		k.snapshot("errfail", "not-lifeboat", nil, nil)
		f := newFixture(t)
		var logs logBuffer
		p := kubePlan(c, "errfail", config.Source{Volumes: &config.VolumesSource{Namespaces: []string{"errfail"},
			Timeout: config.Duration(time.Minute), OnError: config.VolumeErrorFail}})
		_, err := runBackup(ctx, t, f, p, &logs, nil)
		var rerr *backup.RunError
		var cerr *volumes.ClaimError
		if !errors.As(err, &rerr) || rerr.Step != config.SourceVolumes || !errors.As(err, &cerr) ||
			cerr.Namespace != "errfail" || cerr.Claim != "b-broken" ||
			!strings.Contains(err.Error(), "errfail/b-broken") || !strings.Contains(err.Error(), snapErrorMessage) ||
			strings.Contains(err.Error(), "a-ok") {
			t.Fatalf("Run: %v\nlogs:\n%s", err, logs.String())
		}
		t.Logf("Run: %v", err)
		if committed(t, f.st, rerr.Backup) {
			t.Errorf("a failed backup was committed")
		}
		// Both snapshots this run created are gone; the other is kept.
		if got := k.snapshots("errfail"); len(got) != 1 || got[0] != "not-lifeboat" {
			t.Errorf("snapshots left: %v", got)
		}
	})

	// A source after volumes fails: the backup is not committed, and the
	// snapshots it took are deleted rather than left for their retention.
	t.Run("laterSourceFails", func(t *testing.T) {
		ctx := testContext(t)
		k.namespace("later")
		k.claim("later", "db", "1Gi", snapReady, nil)
		k.snapshot("later", "not-lifeboat", nil, nil)
		f := newFixture(t)
		var logs logBuffer
		p := kubePlan(c, "velero-failed",
			config.Source{Volumes: &config.VolumesSource{Namespaces: []string{"later"}, Timeout: config.Duration(time.Minute)}},
			config.Source{Velero: &config.VeleroSource{IncludeNamespaces: []string{"later"}, Timeout: config.Duration(time.Minute)}})
		_, err := runBackup(ctx, t, f, p, &logs, nil)
		var rerr *backup.RunError
		if !errors.As(err, &rerr) || rerr.Step != config.SourceVelero {
			t.Fatalf("Run: %v\nlogs:\n%s", err, logs.String())
		}
		if committed(t, f.st, rerr.Backup) {
			t.Errorf("a failed backup was committed")
		}
		if got := k.snapshots("later"); len(got) != 1 || got[0] != "not-lifeboat" {
			t.Errorf("snapshots left after the failed backup: %v\nlogs:\n%s", got, logs.String())
		}
		// The Velero Backup failed; lifeboat asks Velero to delete it too.
		wantDeleteRequest(t, c, "velero", rerr.Backup, &logs)
	})

	// A source after velero fails: the backup is not committed, and lifeboat
	// asks Velero to delete the Velero Backup it created (the test's Velero
	// server does not act on the request).
	t.Run("veleroDiscarded", func(t *testing.T) {
		ctx := testContext(t)
		k.namespace("velerothen")
		k.claim("velerothen", "broken", "1Gi", snapError, nil)
		f := newFixture(t)
		var logs logBuffer
		p := kubePlan(c, "velero-then-volumes",
			config.Source{Velero: &config.VeleroSource{IncludeNamespaces: []string{"velerothen"}, Timeout: config.Duration(time.Minute)}},
			config.Source{Volumes: &config.VolumesSource{Namespaces: []string{"velerothen"}, Timeout: config.Duration(time.Minute)}})
		_, err := runBackup(ctx, t, f, p, &logs, nil)
		var rerr *backup.RunError
		if !errors.As(err, &rerr) || rerr.Step != config.SourceVolumes {
			t.Fatalf("Run: %v\nlogs:\n%s", err, logs.String())
		}
		if committed(t, f.st, rerr.Backup) {
			t.Errorf("a failed backup was committed")
		}
		wantDeleteRequest(t, c, "velero", rerr.Backup, &logs)
		if !strings.Contains(logs.String(), `"msg":"velero backup of the failed backup: deletion requested"`) {
			t.Errorf("logs lack the deletion request\nlogs:\n%s", logs.String())
		}
	})

	t.Run("errorPartial", func(t *testing.T) {
		ctx := testContext(t)
		k.namespace("errpartial")
		k.claim("errpartial", "a-ok", "1Gi", snapReady, nil)
		k.claim("errpartial", "b-broken", "1Gi", snapError, nil)
		f := newFixture(t)
		var logs logBuffer
		p := kubePlan(c, "errpartial", config.Source{Volumes: &config.VolumesSource{Namespaces: []string{"errpartial"},
			Timeout: config.Duration(time.Minute), OnError: config.VolumeErrorPartial}})
		m, err := runBackup(ctx, t, f, p, &logs, nil)
		if err != nil {
			t.Fatalf("Run: %v\nlogs:\n%s", err, logs.String())
		}
		if m.Status != catalog.StatusPartial || len(m.Skipped) != 1 || m.Skipped[0].Source != "volumes" ||
			!strings.Contains(m.Skipped[0].Reason, "errpartial/b-broken") || !strings.Contains(m.Skipped[0].Reason, snapErrorMessage) {
			t.Fatalf("manifest: status %s, skipped %+v", m.Status, m.Skipped)
		}
		read, err := catalog.Read(ctx, f.st, m.Backup)
		if err != nil {
			t.Fatal(err)
		}
		s := read.Volumes.Snapshots
		if len(s) != 2 || s[0].Claim != "a-ok" || s[0].Error != "" || s[0].Handle == "" ||
			s[1].Claim != "b-broken" || !strings.Contains(s[1].Error, snapErrorMessage) || !strings.Contains(s[1].Error, "reported an error at ") || s[1].Handle != "" {
			t.Fatalf("snapshots: %+v", s)
		}
		// The failed snapshot is deleted, the good one kept.
		if got := k.snapshots("errpartial"); len(got) != 1 || got[0] != volumes.SnapshotName(m.Backup, "a-ok") {
			t.Errorf("snapshots left: %v", got)
		}
	})

	t.Run("neverReady", func(t *testing.T) {
		ctx := testContext(t)
		k.namespace("stuck")
		k.claim("stuck", "slow", "1Gi", snapNever, nil)
		f := newFixture(t)
		var logs logBuffer
		p := kubePlan(c, "stuck", config.Source{Volumes: &config.VolumesSource{Namespaces: []string{"stuck"},
			Timeout: config.Duration(2 * time.Second)}})
		start := time.Now()
		_, err := runBackup(ctx, t, f, p, &logs, nil)
		var rerr *backup.RunError
		if !errors.As(err, &rerr) || !errors.Is(err, volumes.ErrNotReady) || !strings.Contains(err.Error(), "stuck/slow") ||
			!strings.Contains(err.Error(), "waiting for the snapshot controller") {
			t.Fatalf("Run: %v\nlogs:\n%s", err, logs.String())
		}
		t.Logf("Run: %v", err)
		if d := time.Since(start); d > 20*time.Second {
			t.Errorf("Run took %s with a 2s timeout", d)
		}
		if committed(t, f.st, rerr.Backup) {
			t.Errorf("a failed backup was committed")
		}
		if got := k.snapshots("stuck"); len(got) != 0 {
			t.Errorf("snapshots left: %v", got)
		}

		// Under onError partial the backup is committed, partial, without
		// the snapshot.
		p.Spec.Sources[0].Volumes.OnError = config.VolumeErrorPartial
		m, err := runBackup(ctx, t, f, p, &logs, nil)
		if err != nil {
			t.Fatalf("Run: %v\nlogs:\n%s", err, logs.String())
		}
		if m.Status != catalog.StatusPartial || len(m.Skipped) != 1 || !strings.Contains(m.Skipped[0].Reason, "stuck/slow: not ready within the timeout") ||
			len(m.Volumes.Snapshots) != 1 || !strings.Contains(m.Volumes.Snapshots[0].Error, "not ready") || !committed(t, f.st, m.Backup) {
			t.Fatalf("manifest: %+v", m)
		}
		if got := k.snapshots("stuck"); len(got) != 0 {
			t.Errorf("snapshots left: %v", got)
		}
	})

	t.Run("noClaims", func(t *testing.T) {
		ctx := testContext(t)
		k.namespace("empty")
		f := newFixture(t)
		var logs logBuffer
		p := kubePlan(c, "empty", config.Source{Volumes: &config.VolumesSource{Namespaces: []string{"empty"}}})
		m, err := runBackup(ctx, t, f, p, &logs, nil)
		if err != nil {
			t.Fatalf("Run: %v\nlogs:\n%s", err, logs.String())
		}
		if m.Status != catalog.StatusComplete || m.Volumes == nil || len(m.Volumes.Snapshots) != 0 {
			t.Fatalf("manifest: %+v", m)
		}
		if !committed(t, f.st, m.Backup) {
			t.Fatal("not committed")
		}
	})

	// A later run of a plan expires the earlier run's snapshots once its
	// clock passes their retention, and not before.
	t.Run("retentionOfOwnSnapshots", func(t *testing.T) {
		ctx := testContext(t)
		k.namespace("reten")
		k.claim("reten", "db", "1Gi", snapReady, nil)
		f := newFixture(t)
		var logs logBuffer
		p := kubePlan(c, "reten", config.Source{Volumes: &config.VolumesSource{Namespaces: []string{"reten"}, Timeout: config.Duration(time.Minute)}})
		p.Spec.Retention = config.Retention{Default: config.Duration(time.Hour)}
		first, err := runBackup(ctx, t, f, p, &logs, nil)
		if err != nil {
			t.Fatalf("Run: %v\nlogs:\n%s", err, logs.String())
		}
		// Someone who may update VolumeSnapshots moves the first one's
		// retention into the past; and a snapshot named for the first
		// backup that its manifest does not list claims to have expired.
		firstSnap := volumes.SnapshotName(first.Backup, "db")
		past := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
		patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, volumes.AnnotationRetainUntil, past)
		if _, err := k.snaps.VolumeSnapshots("reten").Patch(ctx, firstSnap, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		unlisted := volumes.SnapshotName(first.Backup, "gone")
		k.snapshot("reten", unlisted, map[string]string{volumes.LabelPlan: "reten", volumes.LabelBackup: first.Backup},
			map[string]string{volumes.AnnotationBackup: first.Backup, volumes.AnnotationRetainUntil: past})
		// A snapshot of a backup that never committed, annotated as
		// expired: kept a whole retention (1h) from its creation.
		const uncommitted = "reten-20261120T020000Z-0007"
		orphan := volumes.SnapshotName(uncommitted, "gone")
		k.snapshot("reten", orphan, map[string]string{volumes.LabelPlan: "reten"},
			map[string]string{volumes.AnnotationBackup: uncommitted, volumes.AnnotationRetainUntil: past})
		// A backup ID whose plan differs from this one only in case: it
		// would not be found in this plan's catalog, so it must never be
		// taken for an uncommitted backup of this plan. Its name matches,
		// since names are lower case.
		const variant = "Reten-20261120T030000Z-0008"
		variantSnap := volumes.SnapshotName(variant, "gone")
		k.snapshot("reten", variantSnap, map[string]string{volumes.LabelPlan: "reten"},
			map[string]string{volumes.AnnotationBackup: variant, volumes.AnnotationRetainUntil: past})
		// Someone who can write to the store puts there a manifest (no
		// signed record vouches for it) that lists a snapshot and says
		// it expired an hour ago: its creation time still keeps it a
		// whole retention.
		planted := first
		planted.Backup = "reten-20261120T040000Z-0009"
		planted.Started = time.Date(2026, 11, 20, 4, 0, 0, 0, time.UTC)
		planted.Completed = planted.Started.Add(time.Minute)
		planted.RetainUntil = planted.Completed.Add(time.Hour)
		plantedSnap := volumes.SnapshotName(planted.Backup, "gone")
		planted.Volumes = &catalog.Volumes{Snapshots: []catalog.VolumeSnapshot{{Namespace: "reten", Claim: "gone", Snapshot: plantedSnap, Content: "snapcontent-planted", Handle: "planted", ReadyAt: planted.Started}}}
		mb, err := planted.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.st.Put(ctx, catalog.ManifestKey(planted.Backup), bytes.NewReader(mb), store.PutOptions{RetainUntil: time.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		k.snapshot("reten", plantedSnap, map[string]string{volumes.LabelPlan: "reten"},
			map[string]string{volumes.AnnotationBackup: planted.Backup, volumes.AnnotationRetainUntil: past})
		// 30 minutes later: the first snapshot is kept, its manifest's
		// retention not having ended; so is the unlisted one.
		second, err := runBackup(ctx, t, f, p, &logs, func() time.Time { return time.Now().Add(30 * time.Minute) })
		if err != nil {
			t.Fatalf("Run: %v\nlogs:\n%s", err, logs.String())
		}
		if len(second.Volumes.Expired) != 0 {
			t.Fatalf("expired too early: %v\nlogs:\n%s", second.Volumes.Expired, logs.String())
		}
		for _, want := range []string{`retain-until annotation differs from its backup's manifest; kept until the manifest's`,
			`volume snapshot is not in its backup's manifest; kept`,
			`never committed to this store: kept a full retention from its creation`,
			`backup annotation does not name a backup of this plan; kept`,
			`backup manifest says it expired, but it was created less than the plan's retention ago; kept`} {
			if !strings.Contains(logs.String(), want) {
				t.Errorf("logs lack %s", want)
			}
		}
		// Two hours later: both earlier snapshots have expired; the one no
		// manifest lists is still kept.
		third, err := runBackup(ctx, t, f, p, &logs, func() time.Time { return time.Now().Add(2 * time.Hour) })
		if err != nil {
			t.Fatalf("Run: %v\nlogs:\n%s", err, logs.String())
		}
		wantExpired := []string{"reten/" + firstSnap, "reten/" + volumes.SnapshotName(second.Backup, "db"), "reten/" + orphan, "reten/" + plantedSnap}
		slices.Sort(wantExpired)
		if fmt.Sprint(third.Volumes.Expired) != fmt.Sprint(wantExpired) {
			t.Fatalf("expired = %v, want %v", third.Volumes.Expired, wantExpired)
		}
		wantLeft := []string{volumes.SnapshotName(third.Backup, "db"), unlisted, variantSnap}
		slices.Sort(wantLeft)
		if got := k.snapshots("reten"); fmt.Sprint(got) != fmt.Sprint(wantLeft) {
			t.Errorf("snapshots left: %v, want %v", got, wantLeft)
		}
	})

	// Discard removes a backup's snapshots (for a backup that failed after
	// its volumes source), and never another backup's.
	t.Run("discard", func(t *testing.T) {
		ctx := testContext(t)
		k.namespace("discard")
		k.claim("discard", "db", "1Gi", snapReady, nil)
		k.snapshot("discard", "someone-elses", map[string]string{volumes.LabelPlan: "discard"},
			map[string]string{volumes.AnnotationBackup: "discard-20261125T020000Z-0000"})
		const id = "discard-20261126T020000Z-1234"
		notFound := func(context.Context, string) (volumes.Commit, bool, error) { return volumes.Commit{}, false, nil }
		res, err := volumes.Take(ctx, volumes.Options{Config: adminConfig(c), Plan: "discard", Backup: id,
			Namespaces: []string{"discard"}, Timeout: time.Minute, RetainUntil: time.Now().Add(time.Hour), Retention: time.Hour, Committed: notFound})
		if err != nil || len(res.Volumes.Snapshots) != 1 || res.Volumes.Snapshots[0].Handle == "" {
			t.Fatalf("Take: %+v, %v", res, err)
		}
		v := res.Volumes
		v.Snapshots = append(v.Snapshots, catalog.VolumeSnapshot{Namespace: "discard", Claim: "x", Snapshot: "someone-elses"},
			catalog.VolumeSnapshot{Namespace: "discard", Claim: "y", Snapshot: "never-existed"})
		if err := volumes.Discard(ctx, adminConfig(c), id, v, nil); err != nil {
			t.Fatal(err)
		}
		if got := k.snapshots("discard"); len(got) != 1 || got[0] != "someone-elses" {
			t.Errorf("snapshots left: %v", got)
		}
	})
}
