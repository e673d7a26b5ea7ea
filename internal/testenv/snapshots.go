package testenv

import (
	"context"
	"testing"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned/typed/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
)

// PlaySnapshots plays the CSI snapshot controller on a cluster until ctx
// ends: a VolumeSnapshot of a claim gets a content with a snapshot handle
// and becomes ready, sized like its claim; a VolumeSnapshot of a
// pre-provisioned content becomes bound and ready. No CSI driver runs here.
func PlaySnapshots(ctx context.Context, t *testing.T, c *Cluster) {
	cfg := c.RESTConfig(c.Token)
	snaps, err := snapclient.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	core, err := corev1client.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for ctx.Err() == nil {
			list, _ := snaps.VolumeSnapshots("").List(ctx, metav1.ListOptions{})
			for i := range list.Items {
				vs := &list.Items[i]
				if vs.Status != nil && vs.Status.ReadyToUse != nil && *vs.Status.ReadyToUse {
					continue
				}
				ready, now := true, metav1.Now()
				content := vs.Spec.Source.VolumeSnapshotContentName
				var size *resource.Quantity
				if claim := vs.Spec.Source.PersistentVolumeClaimName; claim != nil {
					pvc, err := core.PersistentVolumeClaims(vs.Namespace).Get(ctx, *claim, metav1.GetOptions{})
					if err != nil {
						continue
					}
					q := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
					size = &q
					name := "snapcontent-" + string(vs.UID)
					handle, bytes := "snap-"+vs.Namespace+"-"+*claim, q.Value()
					vsc, err := snaps.VolumeSnapshotContents().Create(ctx, &snapv1.VolumeSnapshotContent{
						ObjectMeta: metav1.ObjectMeta{Name: name},
						Spec: snapv1.VolumeSnapshotContentSpec{DeletionPolicy: snapv1.VolumeSnapshotContentDelete, Driver: "hostpath.csi.k8s.io",
							Source:            snapv1.VolumeSnapshotContentSource{VolumeHandle: &name},
							VolumeSnapshotRef: corev1.ObjectReference{Namespace: vs.Namespace, Name: vs.Name, UID: vs.UID}},
					}, metav1.CreateOptions{})
					if err != nil {
						continue
					}
					nanos := now.UnixNano()
					vsc.Status = &snapv1.VolumeSnapshotContentStatus{SnapshotHandle: &handle, RestoreSize: &bytes, ReadyToUse: &ready, CreationTime: &nanos}
					snaps.VolumeSnapshotContents().UpdateStatus(ctx, vsc, metav1.UpdateOptions{})
					content = &name
				}
				vs.Status = &snapv1.VolumeSnapshotStatus{BoundVolumeSnapshotContentName: content, ReadyToUse: &ready, CreationTime: &now, RestoreSize: size}
				snaps.VolumeSnapshots(vs.Namespace).UpdateStatus(ctx, vs, metav1.UpdateOptions{})
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
}
