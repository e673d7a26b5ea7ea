package main

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned/typed/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"

	"github.com/lifeboat-dr/lifeboat/internal/job"
	"github.com/lifeboat-dr/lifeboat/internal/testenv"
)

// TestRestoreVolumes: a backup of a real cluster's claim (volumes and
// manifests sources, the test playing the snapshot controller) is
// restored into a second real cluster: the dry run persists nothing; the
// apply creates the pre-provisioned content with the recorded handle, the
// snapshot bound to it and the claim from it, with the backed-up claim's
// storage class and size, and a signed restore record.
func TestRestoreVolumes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	src, dst := testenv.StartCluster(t), testenv.StartCluster(t)
	for _, c := range []*testenv.Cluster{src, dst} {
		testenv.InstallSnapshotCRDs(t, c)
		testenv.PlaySnapshots(ctx, t, c)
	}
	srcCore, err := corev1client.NewForConfig(src.RESTConfig(src.Token))
	if err != nil {
		t.Fatal(err)
	}
	dstCore, err := corev1client.NewForConfig(dst.RESTConfig(dst.Token))
	if err != nil {
		t.Fatal(err)
	}
	sc := "fast-ssd"
	for _, cc := range []corev1client.CoreV1Interface{srcCore, dstCore} {
		if _, err := cc.Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ehr"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := srcCore.PersistentVolumeClaims("ehr").Create(ctx, &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "ehr"},
		Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}, StorageClassName: &sc,
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("5Gi")}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	s := newRotateSetup(t)
	s.addPlan(t, fmt.Sprintf(`apiVersion: lifeboat.dev/v1alpha1
kind: BackupPlan
metadata: {name: data}
spec:
  store: local
  keyProvider: local
  retention: 1d
  cluster: {kubeconfig: %s}
  sources:
    - volumes: {namespaces: [ehr], timeout: 1m}
    - manifests: {includeNamespaces: [ehr]}
`, strconv.Quote(src.Kubeconfig)))
	m := s.backupRun(t, "data")
	if m.Volumes == nil || len(m.Volumes.Snapshots) != 1 || m.Volumes.Snapshots[0].Handle != "snap-ehr-db" {
		t.Fatalf("volumes section %+v", m.Volumes)
	}
	restore := func(extra ...string) (string, string, int) {
		return run(t, append([]string{"--config", s.config, "restore", "volumes", m.Backup, "--kubeconfig", dst.Kubeconfig, "--key", s.signerPub(t), "--signing-key", s.signingKey}, extra...)...)
	}
	out, errs, code := restore()
	uid := regexp.MustCompile(`kube-system UID ([0-9a-f-]{36})`).FindStringSubmatch(out)
	if code != ExitOK || uid == nil || !strings.Contains(out, "Nothing was persisted") {
		t.Fatalf("dry run: exit %d\n%s\n%s", code, out, errs)
	}
	if l, _ := dstCore.PersistentVolumeClaims("ehr").List(ctx, metav1.ListOptions{}); len(l.Items) != 0 {
		t.Fatal("the dry run created a claim")
	}
	out, errs, code = restore("--apply", "--confirm", uid[1])
	t.Logf("apply:\n%s", out)
	if code != ExitOK || !strings.Contains(out, "Restore record: evidence/") {
		t.Fatalf("apply: exit %d\n%s\n%s", code, out, errs)
	}
	pvc, err := dstCore.PersistentVolumeClaims("ehr").Get(ctx, "db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pvc.Spec.DataSource == nil || pvc.Spec.DataSource.Kind != "VolumeSnapshot" || *pvc.Spec.StorageClassName != "fast-ssd" || pvc.Spec.Resources.Requests.Storage().String() != "5Gi" {
		t.Fatalf("restored claim %+v", pvc.Spec)
	}
	snaps, err := snapclient.NewForConfig(dst.RESTConfig(dst.Token))
	if err != nil {
		t.Fatal(err)
	}
	vs, err := snaps.VolumeSnapshots("ehr").Get(ctx, pvc.Spec.DataSource.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	vsc, err := snaps.VolumeSnapshotContents().Get(ctx, *vs.Spec.Source.VolumeSnapshotContentName, metav1.GetOptions{})
	if err != nil || *vsc.Spec.Source.SnapshotHandle != "snap-ehr-db" || vsc.Spec.DeletionPolicy != snapv1.VolumeSnapshotContentRetain {
		t.Fatalf("pre-provisioned content %+v %v", vsc, err)
	}
	recs := s.records(t, job.KindRestore)
	if len(recs) != 1 || recs[0].Subject["target"] != "volumes" {
		t.Fatalf("restore records %+v", recs)
	}
}
