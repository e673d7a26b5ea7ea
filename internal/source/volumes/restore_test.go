package volumes_test

import (
	"context"
	"strings"
	"testing"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned/typed/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/source/volumes"
	"github.com/lifeboat-dr/lifeboat/internal/testenv"
)

// TestRestoreVolumes restores a backup's volumes section into a real
// kube-apiserver with the external-snapshotter CRDs, the test playing the
// snapshot controller (no CSI driver runs here): for each recorded
// snapshot a pre-provisioned VolumeSnapshotContent (Retain, the recorded
// driver and handle) and a VolumeSnapshot bound to it in the mapped
// namespace, then the claim with that snapshot as its dataSource, the
// backed-up claim's spec kept when known, else sized from restoreSize.
// A claim that exists is never touched; a snapshot the backup recorded
// as failed is skipped; a dry run creates nothing; a rerun accepts its own
// earlier objects.
func TestRestoreVolumes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := testenv.StartCluster(t)
	testenv.InstallSnapshotCRDs(t, c)
	cfg := c.RESTConfig(c.Token)
	core, err := corev1client.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	snaps, err := snapclient.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{"ehr-dr", "billing"} {
		if _, err := core.Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// A claim that exists in the target already.
	existing := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "ledger", Namespace: "billing"},
		Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}}}
	if _, err := core.PersistentVolumeClaims("billing").Create(ctx, existing, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// The snapshot controller: binds each restored VolumeSnapshot to its
	// pre-provisioned content and marks it ready.
	go func() {
		for ctx.Err() == nil {
			list, err := snaps.VolumeSnapshots("").List(ctx, metav1.ListOptions{})
			if err == nil {
				for i := range list.Items {
					vs := &list.Items[i]
					if vs.Status != nil && vs.Status.ReadyToUse != nil && *vs.Status.ReadyToUse {
						continue
					}
					ready, now := true, metav1.Now()
					vs.Status = &snapv1.VolumeSnapshotStatus{BoundVolumeSnapshotContentName: vs.Spec.Source.VolumeSnapshotContentName, ReadyToUse: &ready, CreationTime: &now}
					snaps.VolumeSnapshots(vs.Namespace).UpdateStatus(ctx, vs, metav1.UpdateOptions{})
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()

	sc := "fast-ssd"
	backupID := "clinic-20261125T020000Z-7f3a"
	vols := catalog.Volumes{SnapshotClass: "csi-snapclass", Snapshots: []catalog.VolumeSnapshot{
		{Namespace: "billing", Claim: "ledger", Snapshot: "x", Content: "snapcontent-1", Driver: "ebs.csi.aws.com", Handle: "snap-0aaa", RestoreSize: 1 << 30, ReadyAt: time.Now()},
		{Namespace: "ehr", Claim: "db", Snapshot: "y", Content: "snapcontent-2", Driver: "ebs.csi.aws.com", Handle: "snap-0bbb", RestoreSize: 10 << 30, ReadyAt: time.Now()},
		{Namespace: "ehr", Claim: "scratch", Snapshot: "z", Content: "snapcontent-3", Driver: "ebs.csi.aws.com", Handle: "snap-0ccc", RestoreSize: 2 << 30, ReadyAt: time.Now()},
		{Namespace: "ehr", Claim: "broken", Snapshot: "w", Error: "not ready within 30m"},
	}}
	claims := map[string]*corev1.PersistentVolumeClaim{
		"ehr/db": {ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "ehr-db"}},
			Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOncePod}, StorageClassName: &sc,
				Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("20Gi")}}}},
	}
	opts := volumes.RestoreOptions{Config: cfg, Backup: backupID, Volumes: vols, NamespaceMap: map[string]string{"ehr": "ehr-dr"}, Claims: claims, Timeout: time.Minute}

	dry := opts
	dry.DryRun = true
	res, err := volumes.Restore(ctx, dry)
	if err != nil {
		t.Fatal(err)
	}
	if got := outcomes(res); got != "billing/ledger:skipped ehr-dr/db:created ehr-dr/scratch:created ehr-dr/broken:skipped" {
		t.Fatalf("dry run: %s", got)
	}
	if l, _ := snaps.VolumeSnapshotContents().List(ctx, metav1.ListOptions{}); len(l.Items) != 0 {
		t.Fatalf("the dry run created %d VolumeSnapshotContents", len(l.Items))
	}

	for run := 0; run < 2; run++ {
		res, err = volumes.Restore(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		want := "billing/ledger:skipped ehr-dr/db:created ehr-dr/scratch:created ehr-dr/broken:skipped"
		if run == 1 {
			want = "billing/ledger:skipped ehr-dr/db:skipped ehr-dr/scratch:skipped ehr-dr/broken:skipped"
		}
		if got := outcomes(res); got != want {
			t.Fatalf("run %d: %s, want %s\n%+v", run, got, want, res)
		}
	}
	db := res[1]
	vsc, err := snaps.VolumeSnapshotContents().Get(ctx, db.Content, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if vsc.Spec.DeletionPolicy != snapv1.VolumeSnapshotContentRetain || vsc.Spec.Driver != "ebs.csi.aws.com" || vsc.Spec.Source.SnapshotHandle == nil || *vsc.Spec.Source.SnapshotHandle != "snap-0bbb" ||
		vsc.Spec.VolumeSnapshotRef.Namespace != "ehr-dr" || vsc.Spec.VolumeSnapshotRef.Name != db.Snapshot || *vsc.Spec.VolumeSnapshotClassName != "csi-snapclass" {
		t.Fatalf("content %+v", vsc.Spec)
	}
	vs, err := snaps.VolumeSnapshots("ehr-dr").Get(ctx, db.Snapshot, metav1.GetOptions{})
	if err != nil || *vs.Spec.Source.VolumeSnapshotContentName != db.Content {
		t.Fatalf("snapshot %+v %v", vs, err)
	}
	pvc, err := core.PersistentVolumeClaims("ehr-dr").Get(ctx, "db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pvc.Spec.DataSource == nil || pvc.Spec.DataSource.Kind != "VolumeSnapshot" || pvc.Spec.DataSource.Name != db.Snapshot ||
		*pvc.Spec.StorageClassName != "fast-ssd" || pvc.Spec.AccessModes[0] != corev1.ReadWriteOncePod ||
		pvc.Spec.Resources.Requests.Storage().String() != "20Gi" || pvc.Labels["app"] != "ehr-db" {
		t.Fatalf("restored claim %+v", pvc.Spec)
	}
	scratch, err := core.PersistentVolumeClaims("ehr-dr").Get(ctx, "scratch", metav1.GetOptions{})
	if err != nil || scratch.Spec.Resources.Requests.Storage().String() != "2Gi" || scratch.Spec.AccessModes[0] != corev1.ReadWriteOnce {
		t.Fatalf("claim without a backed-up spec: %+v %v", scratch, err)
	}
	if l, _ := core.PersistentVolumeClaims("billing").Get(ctx, "ledger", metav1.GetOptions{}); l.Spec.DataSource != nil {
		t.Fatal("an existing claim was changed")
	}

	// An object of another backup under the same name is left alone.
	other := opts
	other.Backup = "clinic-20261126T020000Z-0001"
	other.Volumes = catalog.Volumes{Snapshots: []catalog.VolumeSnapshot{vols.Snapshots[2]}}
	other.NamespaceMap = map[string]string{"ehr": "billing"}
	if _, err := snaps.VolumeSnapshotContents().Create(ctx, &snapv1.VolumeSnapshotContent{
		ObjectMeta: metav1.ObjectMeta{Name: volumes.SnapshotName("restore-"+other.Backup, "billing-scratch")},
		Spec: snapv1.VolumeSnapshotContentSpec{DeletionPolicy: snapv1.VolumeSnapshotContentDelete, Driver: "x",
			Source:            snapv1.VolumeSnapshotContentSource{SnapshotHandle: ptr("h")},
			VolumeSnapshotRef: corev1.ObjectReference{Namespace: "billing", Name: "n"}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	res, err = volumes.Restore(ctx, other)
	if err != nil || res[0].Outcome != volumes.RestoreFailed || !strings.Contains(res[0].Reason, "not created by a restore of this backup") {
		t.Fatalf("someone else's content: %+v %v", res, err)
	}
}

func outcomes(rs []volumes.ClaimRestore) string {
	var parts []string
	for _, r := range rs {
		parts = append(parts, r.Namespace+"/"+r.Claim+":"+r.Outcome)
	}
	return strings.Join(parts, " ")
}

func ptr[T any](v T) *T { return &v }
