package volumes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned/typed/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
)

// LabelRestoreOf marks the objects a restore created with the label form
// of the backup restored.
const LabelRestoreOf = "lifeboat.dev/restore-of"

// Outcomes of one claim in a restore.
const (
	RestoreCreated = "created"
	RestoreSkipped = "skipped"
	RestoreFailed  = "failed"
)

// RestoreOptions configure Restore.
type RestoreOptions struct {
	// Config reaches the target API server. Required.
	Config *rest.Config
	// Backup is the backup ID and Volumes its manifest's volumes section.
	Backup  string
	Volumes catalog.Volumes
	// NamespaceMap restores claims of namespace a into namespace b.
	NamespaceMap map[string]string
	// Claims are the backed-up PersistentVolumeClaims by "namespace/name"
	// (from the backup's manifests export, when it has one): their access
	// modes, storage class, volume mode and requests are kept. A claim
	// without one is restored ReadWriteOnce, of its snapshot's restoreSize,
	// in the default storage class.
	Claims map[string]*corev1.PersistentVolumeClaim
	// DryRun sends every create with dryRun=All and waits for nothing.
	DryRun bool
	// Labels and Annotations are added to every object created (a drill
	// marks what it creates, so that it deletes only that).
	Labels, Annotations map[string]string
	// Timeout bounds the wait for each restored VolumeSnapshot to be
	// bound and ready; zero means five minutes.
	Timeout time.Duration
	// Logger receives progress; nil discards it.
	Logger *slog.Logger
}

// ClaimRestore is what became of one claim.
type ClaimRestore struct {
	Namespace string `json:"namespace"`
	Claim     string `json:"claim"`
	// Snapshot and Content are the VolumeSnapshot and the pre-provisioned
	// VolumeSnapshotContent created for it; the claim's dataSource names
	// the snapshot.
	Snapshot string `json:"snapshot"`
	Content  string `json:"content"`
	Outcome  string `json:"outcome"`
	Reason   string `json:"reason,omitempty"`
	// Phase is the restored claim's phase when Restore returned (Pending
	// until the CSI driver provisions the volume from the snapshot).
	Phase string `json:"phase,omitempty"`
}

// Restore restores every snapshot of a backup's volumes section into
// claims, the way that works across clusters: for each, a pre-provisioned
// VolumeSnapshotContent (deletionPolicy Retain, so that deleting the
// restored objects never deletes the storage system's snapshot, which the
// source cluster may still hold) naming the recorded driver and snapshot
// handle, a VolumeSnapshot bound to it in the (mapped) namespace, waited on
// until ready, then the PersistentVolumeClaim with that snapshot as its
// dataSource. A claim that already exists is never touched (skipped), nor
// are existing snapshot objects of another backup. Snapshots the backup
// recorded as failed are skipped.
func Restore(ctx context.Context, o RestoreOptions) ([]ClaimRestore, error) {
	if o.Config == nil {
		return nil, errors.New("restore volumes: no target API server")
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Minute
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	core, err := corev1client.NewForConfig(o.Config)
	if err != nil {
		return nil, fmt.Errorf("restore volumes: %w", err)
	}
	snaps, err := snapclient.NewForConfig(o.Config)
	if err != nil {
		return nil, fmt.Errorf("restore volumes: %w", err)
	}
	var out []ClaimRestore
	for _, s := range o.Volumes.Snapshots {
		if err := ctx.Err(); err != nil {
			return out, fmt.Errorf("restore volumes: %w", err)
		}
		ns := s.Namespace
		if m, ok := o.NamespaceMap[ns]; ok {
			ns = m
		}
		r := ClaimRestore{Namespace: ns, Claim: s.Claim,
			Snapshot: SnapshotName("restore-"+o.Backup, s.Claim),
			Content:  SnapshotName("restore-"+o.Backup, ns+"-"+s.Claim)}
		if s.Error != "" {
			r.Outcome, r.Reason = RestoreSkipped, "the backup recorded no snapshot: "+s.Error
			out = append(out, r)
			continue
		}
		restoreClaim(ctx, core, snaps, o, s, &r)
		if r.Outcome == RestoreFailed {
			log.Warn("volume not restored", "namespace", ns, "claim", s.Claim, "reason", r.Reason)
		} else {
			log.Info("volume restore", "namespace", ns, "claim", s.Claim, "outcome", r.Outcome, "phase", r.Phase)
		}
		out = append(out, r)
	}
	return out, nil
}

func restoreClaim(ctx context.Context, core corev1client.CoreV1Interface, snaps snapclient.SnapshotV1Interface, o RestoreOptions, s catalog.VolumeSnapshot, r *ClaimRestore) {
	fail := func(step string, err error) { r.Outcome, r.Reason = RestoreFailed, fmt.Sprintf("%s: %v", step, err) }
	create := metav1.CreateOptions{FieldManager: "lifeboat-restore"}
	if o.DryRun {
		create.DryRun = []string{metav1.DryRunAll}
	}
	if _, err := core.PersistentVolumeClaims(r.Namespace).Get(ctx, s.Claim, metav1.GetOptions{}); err == nil {
		r.Outcome, r.Reason = RestoreSkipped, "the claim exists in the target; it is never overwritten"
		return
	} else if !apierrors.IsNotFound(err) {
		fail("read claim", err)
		return
	}
	labels := map[string]string{LabelRestoreOf: LabelValue(o.Backup)}
	maps.Copy(labels, o.Labels)
	ann := map[string]string{AnnotationBackup: o.Backup}
	maps.Copy(ann, o.Annotations)

	retain := snapv1.VolumeSnapshotContentRetain
	content := &snapv1.VolumeSnapshotContent{
		ObjectMeta: metav1.ObjectMeta{Name: r.Content, Labels: labels, Annotations: ann},
		Spec: snapv1.VolumeSnapshotContentSpec{
			DeletionPolicy:    retain,
			Driver:            s.Driver,
			Source:            snapv1.VolumeSnapshotContentSource{SnapshotHandle: &s.Handle},
			VolumeSnapshotRef: corev1.ObjectReference{APIVersion: "snapshot.storage.k8s.io/v1", Kind: "VolumeSnapshot", Namespace: r.Namespace, Name: r.Snapshot},
		},
	}
	if o.Volumes.SnapshotClass != "" {
		content.Spec.VolumeSnapshotClassName = &o.Volumes.SnapshotClass
	}
	if err := createOrOwn(ctx, o.Backup, func() error {
		_, err := snaps.VolumeSnapshotContents().Create(ctx, content, create)
		return err
	}, func() (map[string]string, error) {
		c, err := snaps.VolumeSnapshotContents().Get(ctx, r.Content, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		return c.Annotations, nil
	}); err != nil {
		fail("create VolumeSnapshotContent "+r.Content, err)
		return
	}
	vs := &snapv1.VolumeSnapshot{
		ObjectMeta: metav1.ObjectMeta{Name: r.Snapshot, Namespace: r.Namespace, Labels: labels, Annotations: ann},
		Spec:       snapv1.VolumeSnapshotSpec{Source: snapv1.VolumeSnapshotSource{VolumeSnapshotContentName: &r.Content}},
	}
	if o.Volumes.SnapshotClass != "" {
		vs.Spec.VolumeSnapshotClassName = &o.Volumes.SnapshotClass
	}
	if err := createOrOwn(ctx, o.Backup, func() error {
		_, err := snaps.VolumeSnapshots(r.Namespace).Create(ctx, vs, create)
		return err
	}, func() (map[string]string, error) {
		v, err := snaps.VolumeSnapshots(r.Namespace).Get(ctx, r.Snapshot, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		return v.Annotations, nil
	}); err != nil {
		fail("create VolumeSnapshot "+r.Snapshot, err)
		return
	}
	if !o.DryRun {
		if err := waitReady(ctx, snaps, r.Namespace, r.Snapshot, o.Timeout); err != nil {
			fail("VolumeSnapshot "+r.Snapshot, err)
			return
		}
	}
	pvc, err := claimFor(o, s, r)
	if err != nil {
		fail("claim", err)
		return
	}
	got, err := core.PersistentVolumeClaims(r.Namespace).Create(ctx, pvc, create)
	if err != nil {
		fail("create claim", err)
		return
	}
	r.Outcome, r.Phase = RestoreCreated, string(got.Status.Phase)
	if r.Phase == "" {
		r.Phase = string(corev1.ClaimPending)
	}
}

// createOrOwn creates an object; one that exists already is accepted only
// when its lifeboat.dev/backup annotation names this backup (an earlier,
// interrupted run of the same restore), never an object of anyone else.
func createOrOwn(ctx context.Context, backup string, create func() error, get func() (map[string]string, error)) error {
	err := create()
	if err == nil || !apierrors.IsAlreadyExists(err) {
		return err
	}
	ann, gerr := get()
	if gerr != nil {
		return fmt.Errorf("exists, and cannot be read: %w", gerr)
	}
	if ann[AnnotationBackup] != backup {
		return errors.New("exists and was not created by a restore of this backup; it is left alone")
	}
	return nil
}

// claimFor builds the restored claim: the backed-up claim's access modes,
// storage class, volume mode and requests when known, else ReadWriteOnce
// of the snapshot's restore size; its dataSource is the restored snapshot.
func claimFor(o RestoreOptions, s catalog.VolumeSnapshot, r *ClaimRestore) (*corev1.PersistentVolumeClaim, error) {
	apiGroup := snapv1.GroupName
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: s.Claim, Namespace: r.Namespace,
			Labels: claimLabels(o), Annotations: claimAnnotations(o)},
	}
	if src := o.Claims[s.Namespace+"/"+s.Claim]; src != nil {
		pvc.Spec.AccessModes = src.Spec.AccessModes
		pvc.Spec.StorageClassName = src.Spec.StorageClassName
		pvc.Spec.VolumeMode = src.Spec.VolumeMode
		pvc.Spec.Resources = src.Spec.Resources
		for k, v := range src.Labels {
			pvc.Labels[k] = v
		}
		maps.Copy(pvc.Labels, o.Labels)
	}
	if len(pvc.Spec.AccessModes) == 0 {
		pvc.Spec.AccessModes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}
	}
	if _, ok := pvc.Spec.Resources.Requests[corev1.ResourceStorage]; !ok {
		if s.RestoreSize <= 0 {
			return nil, errors.New("neither the backed-up claim nor the snapshot's restoreSize says how large the volume must be")
		}
		pvc.Spec.Resources.Requests = corev1.ResourceList{corev1.ResourceStorage: *resource.NewQuantity(s.RestoreSize, resource.BinarySI)}
	}
	pvc.Spec.DataSource = &corev1.TypedLocalObjectReference{APIGroup: &apiGroup, Kind: "VolumeSnapshot", Name: r.Snapshot}
	pvc.Spec.DataSourceRef = &corev1.TypedObjectReference{APIGroup: &apiGroup, Kind: "VolumeSnapshot", Name: r.Snapshot}
	return pvc, nil
}

// waitReady polls a VolumeSnapshot until the snapshot controller has bound
// it to its content and reports it ready, it reports an error, or timeout
// passes.
func waitReady(ctx context.Context, snaps snapclient.SnapshotV1Interface, ns, name string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	wait := pollFirst
	for {
		vs, err := snaps.VolumeSnapshots(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil && vs.Status != nil {
			if vs.Status.Error != nil && vs.Status.Error.Message != nil {
				return fmt.Errorf("the snapshot controller reports: %s", *vs.Status.Error.Message)
			}
			if vs.Status.ReadyToUse != nil && *vs.Status.ReadyToUse {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not bound and ready within %s (is the snapshot controller running, and does the driver know the handle?)", timeout)
		case <-time.After(wait):
		}
		wait = min(wait*2, pollMax)
	}
}

func claimLabels(o RestoreOptions) map[string]string {
	l := map[string]string{LabelRestoreOf: LabelValue(o.Backup)}
	maps.Copy(l, o.Labels)
	return l
}

func claimAnnotations(o RestoreOptions) map[string]string {
	a := map[string]string{AnnotationBackup: o.Backup}
	maps.Copy(a, o.Annotations)
	return a
}
