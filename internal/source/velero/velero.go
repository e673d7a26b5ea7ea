package velero

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
)

// Labels and annotations on the Velero Backups lifeboat creates; the same
// keys as on its VolumeSnapshots (docs/format.md §6.2, §6.4).
const (
	LabelPlan             = "lifeboat.dev/plan"
	LabelBackup           = "lifeboat.dev/backup"
	AnnotationBackup      = "lifeboat.dev/backup"
	AnnotationRetainUntil = "lifeboat.dev/retain-until"
)

// Defaults when Options leave them zero.
const (
	DefaultNamespace = "velero"
	DefaultTimeout   = time.Hour
)

// Polling intervals while waiting for the Velero backup.
const (
	pollFirst = 250 * time.Millisecond
	pollMax   = 5 * time.Second
)

// BackupResource is the Velero Backup resource.
var BackupResource = schema.GroupVersionResource{Group: "velero.io", Version: "v1", Resource: "backups"}

// DeleteBackupRequestResource is the Velero DeleteBackupRequest resource:
// how a Velero Backup is deleted together with its data.
var DeleteBackupRequestResource = schema.GroupVersionResource{Group: "velero.io", Version: "v1", Resource: "deletebackuprequests"}

// Errors a caller may test for with errors.Is.
var (
	// ErrFailed: Velero finished the backup as Failed or FailedValidation,
	// or it was deleted.
	ErrFailed = errors.New("velero backup failed")
	// ErrTimeout: the backup did not finish within the timeout.
	ErrTimeout = errors.New("velero backup did not finish within the timeout")
)

// Options describe the Velero backup of one lifeboat backup.
type Options struct {
	// Config reaches the cluster's API server. Required.
	Config *rest.Config
	// Plan and Backup are the plan's name and the backup ID. Required.
	Plan, Backup string
	// Namespace is where Velero runs; empty means DefaultNamespace.
	Namespace string
	// IncludeNamespaces limits the Velero backup; empty means all.
	IncludeNamespaces []string
	// RetainUntil is the backup's retain-until time: the Velero backup's
	// TTL runs to it. Required.
	RetainUntil time.Time
	// Timeout bounds waiting; zero means DefaultTimeout.
	Timeout time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives progress; nil discards it.
	Logger *slog.Logger
}

// Ref names a Velero Backup that Run created.
type Ref struct {
	Namespace, Name string
	UID             types.UID
}

// Result is the outcome of a Velero backup that Completed or
// PartiallyFailed. When Run fails, only Created is set (if Run created the
// Backup), so that the caller can Discard it.
type Result struct {
	// Created is the Velero Backup Run created; zero when it created none.
	Created Ref
	// Velero is the manifest's velero section.
	Velero catalog.Velero
	// Skipped holds one entry when the backup PartiallyFailed, which makes
	// the lifeboat backup partial.
	Skipped []catalog.Skip
}

// Name returns the name of the Velero Backup of a lifeboat backup: the
// lower-cased ID, shortened with a digest to 63 characters when longer,
// since Velero copies backup names into label values.
func Name(backup string) string {
	name := strings.ReplaceAll(strings.ToLower(backup), "_", "-")
	if len(validation.IsValidLabelValue(name)) == 0 && len(validation.IsDNS1123Subdomain(name)) == 0 {
		return name
	}
	return shortened(name)
}

// LabelValue returns v when it is a valid label value, else its first 46
// characters without trailing non-alphanumerics, "-" and 16 hex digits of
// its SHA-256 (docs/format.md §6.2).
func LabelValue(v string) string {
	if len(validation.IsValidLabelValue(v)) == 0 {
		return v
	}
	return shortened(v)
}

func shortened(v string) string {
	sum := sha256.Sum256([]byte(v))
	prefix := strings.TrimRightFunc(v[:min(len(v), 46)], func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
	})
	if prefix == "" || len(validation.IsValidLabelValue(prefix)) != 0 {
		return hex.EncodeToString(sum[:8])
	}
	return prefix + "-" + hex.EncodeToString(sum[:8])
}

// Run creates the Velero Backup and waits for it. Completed and
// PartiallyFailed return a Result (PartiallyFailed with a Skip); Failed,
// FailedValidation, deletion and the timeout return an error naming the
// Velero Backup and why (ErrFailed, ErrTimeout), and a Result holding only
// Created. Run never deletes the Backup: a caller whose backup fails
// Discards it.
func Run(ctx context.Context, opts Options) (Result, error) {
	if opts.Config == nil || opts.Plan == "" || opts.Backup == "" || opts.RetainUntil.IsZero() {
		return Result{}, errors.New("velero: config, plan, backup and retain-until are required")
	}
	if opts.Namespace == "" {
		opts.Namespace = DefaultNamespace
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dyn, err := dynamic.NewForConfig(opts.Config)
	if err != nil {
		return Result{}, fmt.Errorf("velero: client: %w", err)
	}
	client := dyn.Resource(BackupResource).Namespace(opts.Namespace)
	name := Name(opts.Backup)
	ref := opts.Namespace + "/" + name
	log = log.With("source", catalog.SourceVelero, "veleroBackup", ref)

	ttl := opts.RetainUntil.Sub(opts.Now())
	ttl = (ttl + time.Second - 1).Truncate(time.Second)
	b := &velerov1.Backup{
		TypeMeta: metav1.TypeMeta{APIVersion: velerov1.SchemeGroupVersion.String(), Kind: "Backup"},
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: opts.Namespace,
			Labels: map[string]string{LabelPlan: LabelValue(opts.Plan), LabelBackup: LabelValue(opts.Backup)},
			Annotations: map[string]string{
				AnnotationBackup:      opts.Backup,
				AnnotationRetainUntil: opts.RetainUntil.UTC().Format(time.RFC3339),
			},
		},
		Spec: velerov1.BackupSpec{IncludedNamespaces: opts.IncludeNamespaces, TTL: metav1.Duration{Duration: max(ttl, 0)}},
	}
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(b)
	if err != nil {
		return Result{}, fmt.Errorf("velero: backup %s: %w", ref, err)
	}
	created, err := client.Create(ctx, &unstructured.Unstructured{Object: obj}, metav1.CreateOptions{})
	if err != nil {
		return Result{}, fmt.Errorf("velero: create backup %s: %w", ref, err)
	}
	log.Info("velero backup created", "includedNamespaces", opts.IncludeNamespaces, "ttl", ttl)
	made := Ref{Namespace: opts.Namespace, Name: name, UID: created.GetUID()}
	fail := func(err error) (Result, error) { return Result{Created: made}, err }

	wctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	interval := pollFirst
	var phase velerov1.BackupPhase
	lastErr := ""
	for {
		u, err := client.Get(wctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			return fail(fmt.Errorf("velero: backup %s (last phase %q): deleted while lifeboat waited for it: %w", ref, phase, ErrFailed))
		case err != nil && wctx.Err() == nil:
			if err.Error() != lastErr {
				lastErr = err.Error()
				log.Warn("get velero backup; retrying", "err", err)
			}
		case err == nil:
			if u.GetUID() != created.GetUID() {
				return fail(fmt.Errorf("velero: backup %s was replaced by another object while lifeboat waited for it: %w", ref, ErrFailed))
			}
			var got velerov1.Backup
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &got); err != nil {
				return fail(fmt.Errorf("velero: backup %s: decode: %w", ref, err))
			}
			if got.Status.Phase != phase {
				phase = got.Status.Phase
				log.Info("velero backup phase", "phase", phaseText(phase), "errors", got.Status.Errors, "warnings", got.Status.Warnings)
			}
			if res, done, err := outcome(ref, &got, opts); done {
				if err != nil {
					log.Error("velero backup failed", "phase", phase, "err", err)
					return fail(err)
				}
				if exp := res.Velero.Expires; !exp.IsZero() && exp.Before(opts.RetainUntil) {
					log.Warn("velero backup expires before the lifeboat backup's retention ends (clock skew between lifeboat and the Velero server?); Velero will delete it first",
						"expires", exp, "retainUntil", opts.RetainUntil.UTC())
				}
				res.Created = made
				return res, nil
			}
		}
		timer := time.NewTimer(interval)
		select {
		case <-timer.C:
		case <-wctx.Done():
			timer.Stop()
			if err := ctx.Err(); err != nil {
				return fail(fmt.Errorf("velero: waiting for backup %s: %w", ref, err))
			}
			err := fmt.Errorf("velero: backup %s: still %s after %s: %w", ref, phaseText(phase), opts.Timeout, ErrTimeout)
			log.Error("velero backup failed", "err", err)
			return fail(err)
		}
		interval = min(interval*3/2, pollMax)
	}
}

func phaseText(p velerov1.BackupPhase) string {
	if p == "" {
		return "without a phase (is the Velero server running?)"
	}
	return string(p)
}

// outcome judges b: done is set once its phase is final.
func outcome(ref string, b *velerov1.Backup, opts Options) (res Result, done bool, err error) {
	st := b.Status
	switch st.Phase {
	case velerov1.BackupPhaseCompleted, velerov1.BackupPhasePartiallyFailed:
	case velerov1.BackupPhaseFailed:
		reason := st.FailureReason
		if reason == "" {
			reason = "no failure reason given"
		}
		return Result{}, true, fmt.Errorf("velero: backup %s: Failed (%d errors): %s: %w", ref, st.Errors, reason, ErrFailed)
	case velerov1.BackupPhaseFailedValidation:
		return Result{}, true, fmt.Errorf("velero: backup %s: FailedValidation: %s: %w", ref, strings.Join(st.ValidationErrors, "; "), ErrFailed)
	case velerov1.BackupPhaseDeleting:
		return Result{}, true, fmt.Errorf("velero: backup %s: Deleting: %w", ref, ErrFailed)
	default:
		return Result{}, false, nil
	}
	v := catalog.Velero{
		Namespace: b.Namespace, Backup: b.Name, Phase: string(st.Phase),
		Errors: st.Errors, Warnings: st.Warnings,
		IncludedNamespaces: opts.IncludeNamespaces, StorageLocation: b.Spec.StorageLocation,
	}
	if st.StartTimestamp != nil {
		v.Started = st.StartTimestamp.UTC()
	}
	if st.CompletionTimestamp != nil {
		v.Completed = st.CompletionTimestamp.UTC()
	}
	if st.Expiration != nil {
		v.Expires = st.Expiration.UTC()
	}
	res = Result{Velero: v}
	if st.Phase == velerov1.BackupPhasePartiallyFailed {
		res.Skipped = []catalog.Skip{{Source: catalog.SourceVelero,
			Reason: fmt.Sprintf("velero backup %s: PartiallyFailed with %d errors and %d warnings", ref, st.Errors, st.Warnings)}}
	}
	return res, true, nil
}

// Discard asks Velero to delete the Backup ref that Run created for backup,
// with its data, for a lifeboat backup that failed: the backup is not
// committed, so nothing refers to the Velero Backup. It creates a
// DeleteBackupRequest for it, unless the Backup is gone, is being deleted,
// or is not the one Run created (another UID, or its lifeboat.dev/backup
// annotation is not backup), which is logged and kept. Velero refuses to
// delete a backup still in progress; that is logged too.
func Discard(ctx context.Context, cfg *rest.Config, ref Ref, backup string, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	where := ref.Namespace + "/" + ref.Name
	log := logger.With("source", catalog.SourceVelero, "veleroBackup", where)
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("velero: client: %w", err)
	}
	u, err := dyn.Resource(BackupResource).Namespace(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		log.Info("velero backup of the failed backup already gone")
		return nil
	case err != nil:
		return fmt.Errorf("velero: discard backup %s: %w", where, err)
	case u.GetUID() != ref.UID || u.GetAnnotations()[AnnotationBackup] != backup:
		log.Warn("velero backup is not the one this backup created; kept", "uid", u.GetUID(),
			"veleroBackupOf", u.GetAnnotations()[AnnotationBackup])
		return nil
	case u.GetDeletionTimestamp() != nil:
		log.Info("velero backup of the failed backup already being deleted")
		return nil
	}
	phase, _, _ := unstructured.NestedString(u.Object, "status", "phase")
	if velerov1.BackupPhase(phase) == velerov1.BackupPhaseDeleting {
		log.Info("velero backup of the failed backup already being deleted")
		return nil
	}
	req := &velerov1.DeleteBackupRequest{
		TypeMeta: metav1.TypeMeta{APIVersion: velerov1.SchemeGroupVersion.String(), Kind: "DeleteBackupRequest"},
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: ref.Name + "-", Namespace: ref.Namespace,
			Labels: map[string]string{
				velerov1.BackupNameLabel: LabelValue(ref.Name), velerov1.BackupUIDLabel: string(ref.UID),
				LabelBackup: LabelValue(backup),
			},
			Annotations: map[string]string{AnnotationBackup: backup},
		},
		Spec: velerov1.DeleteBackupRequestSpec{BackupName: ref.Name},
	}
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(req)
	if err != nil {
		return fmt.Errorf("velero: discard backup %s: %w", where, err)
	}
	made, err := dyn.Resource(DeleteBackupRequestResource).Namespace(ref.Namespace).Create(ctx,
		&unstructured.Unstructured{Object: obj}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("velero: discard backup %s: create delete backup request: %w", where, err)
	}
	log = log.With("deleteBackupRequest", ref.Namespace+"/"+made.GetName(), "phase", phaseText(velerov1.BackupPhase(phase)))
	if final(velerov1.BackupPhase(phase)) {
		log.Info("velero backup of the failed backup: deletion requested")
	} else {
		log.Warn("velero backup of the failed backup: deletion requested, but Velero refuses to delete a backup still in progress; delete it with `velero backup delete` once it has finished")
	}
	return nil
}

// final reports whether Velero is done with a backup in phase p, so that it
// accepts a request to delete it.
func final(p velerov1.BackupPhase) bool {
	switch p {
	case velerov1.BackupPhaseCompleted, velerov1.BackupPhasePartiallyFailed, velerov1.BackupPhaseFailed,
		velerov1.BackupPhaseFailedValidation:
		return true
	}
	return false
}
