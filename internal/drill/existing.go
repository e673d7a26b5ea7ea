package drill

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/source/volumes"
)

// A drill into an existing cluster (the kubeconfig scratch provider)
// restores the backup's namespaced objects into namespaces of its own,
// lbdrill-<run>-<namespace>, labels everything it creates with
// LabelDrillRun and AnnotationDrillRun, waits for the workloads to be
// ready, runs the Drill's checks, and deletes afterwards only what carries
// both marks of this run (docs/format.md §5.6.1).
const (
	// LabelDrillRun marks what a drill created: the first 16 hex digits of
	// the SHA-256 of its run ID (a label value holds at most 63 bytes).
	LabelDrillRun = "lifeboat.dev/drill-run"
	// AnnotationDrillRun holds the full run ID, checked before a delete.
	AnnotationDrillRun = "lifeboat.dev/drill-run-id"

	PhaseRestoreVolumes = "restore volumes"
	PhaseRestoreVelero  = "restore velero"
	PhaseAppReady       = "app ready"

	// CheckVolumesBound and CheckVelero are the checks a drill into an
	// existing cluster adds for the volumes and the Velero restore.
	CheckVolumesBound = "volumes bound"
	CheckVelero       = "velero restore"
)

// runLabel is the LabelDrillRun value of a run.
func runLabel(runID string) string {
	sum := sha256.Sum256([]byte(runID))
	return hex.EncodeToString(sum[:8])
}

// DrillNamespace is the namespace a drill into an existing cluster
// restores namespace ns into: lbdrill-<8 hex of the run>-<ns>, shortened
// with a digest of ns to fit 63 bytes.
func DrillNamespace(runID, ns string) string {
	name := "lbdrill-" + runLabel(runID)[:8] + "-" + ns
	if len(name) <= 63 {
		return name
	}
	sum := sha256.Sum256([]byte(ns))
	return strings.TrimRight(name[:63-9], "-") + "-" + hex.EncodeToString(sum[:4])
}

// existing reports whether the drill restores into an existing cluster.
func (r *runner) existing() bool { return r.opts.Scratch.Name() == "kubeconfig" }

// mapNS maps a backed-up namespace to where the drill restored it.
func (r *runner) mapNS(ns string) string {
	if !r.existing() {
		return ns
	}
	return DrillNamespace(r.res.RunID, ns)
}

// marks are the labels and annotations of everything the drill creates.
func (r *runner) marks() (labels, annotations map[string]string) {
	return map[string]string{LabelDrillRun: runLabel(r.res.RunID)}, map[string]string{AnnotationDrillRun: r.res.RunID}
}

// namespaceMap maps every namespace of the export; the Namespaces the
// export does not hold as objects are created, marked, first.
func (r *runner) namespaceMap(ctx context.Context, dc dynamic.Interface) (map[string]string, error) {
	m := map[string]string{}
	asObject := map[string]bool{}
	for _, e := range r.manifests.archive.Index.Objects {
		switch {
		case e.Group == "" && e.Resource == "namespaces":
			m[e.Name] = r.mapNS(e.Name)
			asObject[e.Name] = true
		case e.Namespace != "":
			m[e.Namespace] = r.mapNS(e.Namespace)
		}
	}
	for src, dst := range m {
		if asObject[src] {
			// Restored from the export with the run's marks; one that
			// already exists is refused here.
			if err := r.freeNamespace(ctx, dc, dst); err != nil {
				return nil, err
			}
			continue
		}
		if err := r.ensureNamespace(ctx, dc, dst); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// freeNamespace fails when namespace name exists and is not this run's:
// the drill restores only into namespaces it made.
func (r *runner) freeNamespace(ctx context.Context, dc dynamic.Interface, name string) error {
	u, err := dc.Resource(gvrNamespaces).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return fmt.Errorf("namespace %s: %w", name, err)
	case !r.ours(*u):
		return fmt.Errorf("namespace %s exists and is not this drill run's (no %s/%s marks of run %s): the drill restores only into namespaces it creates", name, LabelDrillRun, AnnotationDrillRun, r.res.RunID)
	}
	return nil
}

// ensureNamespace creates namespace name with the run's marks, or accepts
// it when it already carries them.
func (r *runner) ensureNamespace(ctx context.Context, dc dynamic.Interface, name string) error {
	if err := r.freeNamespace(ctx, dc, name); err != nil {
		return err
	}
	labels, ann := r.marks()
	ns := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace",
		"metadata": map[string]any{"name": name, "labels": toAny(labels), "annotations": toAny(ann)}}}
	if _, err := dc.Resource(gvrNamespaces).Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", name, err)
	}
	return nil
}

// ours reports whether an object carries both of this run's marks.
func (r *runner) ours(u unstructured.Unstructured) bool {
	labels, _ := r.marks()
	return u.GetLabels()[LabelDrillRun] == labels[LabelDrillRun] && u.GetAnnotations()[AnnotationDrillRun] == r.res.RunID
}

func toAny(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

var (
	gvrNamespaces     = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
	gvrClaims         = schema.GroupVersionResource{Version: "v1", Resource: "persistentvolumeclaims"}
	gvrJobs           = schema.GroupVersionResource{Group: "batch", Version: "v1", Resource: "jobs"}
	gvrDeployments    = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	gvrStatefulSets   = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "statefulsets"}
	gvrContents       = schema.GroupVersionResource{Group: "snapshot.storage.k8s.io", Version: "v1", Resource: "volumesnapshotcontents"}
	gvrVeleroRestores = schema.GroupVersionResource{Group: "velero.io", Version: "v1", Resource: "restores"}
	gvrClusterRoles   = schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"}
)

// pollInterval is how often the waits of a drill into an existing cluster
// look again.
const pollInterval = time.Second

// restoreVolumes is the restore volumes phase: every recorded snapshot
// restored with the code of lifeboat restore volumes into the drill's
// namespaces, then each claim waited on until Bound.
func (r *runner) restoreVolumes(ctx context.Context, m catalog.Manifest) error {
	var specs map[string]*corev1.PersistentVolumeClaim
	if r.manifests != nil {
		var err error
		if specs, err = r.manifests.archive.Claims(); err != nil {
			return err
		}
	}
	nsMap := map[string]string{}
	for _, s := range m.Volumes.Snapshots {
		nsMap[s.Namespace] = r.mapNS(s.Namespace)
	}
	labels, ann := r.marks()
	dc, err := dynamic.NewForConfig(restConfig(r.cluster.Access()))
	if err != nil {
		return err
	}
	for _, dst := range nsMap {
		if err := r.ensureNamespace(ctx, dc, dst); err != nil {
			return err
		}
	}
	got, err := volumes.Restore(ctx, volumes.RestoreOptions{
		Config: restConfig(r.cluster.Access()), Backup: m.Backup, Volumes: *m.Volumes, NamespaceMap: nsMap,
		Claims: specs, Labels: labels, Annotations: ann, Logger: r.log,
	})
	r.volumes = got
	if err != nil {
		return err
	}
	var waiting []string
	for {
		waiting = waiting[:0]
		for _, c := range got {
			if c.Outcome == volumes.RestoreFailed {
				return fmt.Errorf("claim %s/%s: %s", c.Namespace, c.Claim, c.Reason)
			}
			u, err := dc.Resource(gvrClaims).Namespace(c.Namespace).Get(ctx, c.Claim, metav1.GetOptions{})
			if err != nil {
				return fmt.Errorf("claim %s/%s: %w", c.Namespace, c.Claim, err)
			}
			if phase, _, _ := unstructured.NestedString(u.Object, "status", "phase"); phase != "Bound" {
				waiting = append(waiting, c.Namespace+"/"+c.Claim+" ("+cmp.Or(phase, "Pending")+")")
			}
		}
		if len(waiting) == 0 {
			r.event(PhaseRestoreVolumes, "%d claims restored from their snapshots and Bound", len(got))
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("claims not Bound: %s: %w", strings.Join(waiting, ", "), ctx.Err())
		case <-time.After(pollInterval):
		}
	}
}

// restoreVelero is the restore velero phase: a Velero Restore of the
// backup's recorded Velero Backup, its namespaces mapped to the drill's,
// waited on until Velero reports a final phase.
func (r *runner) restoreVelero(ctx context.Context, m catalog.Manifest) error {
	v := m.Velero
	// Every namespace Velero restores must be mapped into one the drill
	// made: a Velero Backup of all namespaces would restore the others
	// under their own names.
	if len(v.IncludedNamespaces) == 0 || slices.Contains(v.IncludedNamespaces, "*") {
		return fmt.Errorf("the Velero Backup %s/%s covers every namespace: a drill into an existing cluster restores only named namespaces, mapped into its own; give the plan's velero source includeNamespaces", v.Namespace, v.Backup)
	}
	dc, err := dynamic.NewForConfig(restConfig(r.cluster.Access()))
	if err != nil {
		return err
	}
	mapping := map[string]any{}
	for _, ns := range v.IncludedNamespaces {
		dst := r.mapNS(ns)
		if err := r.ensureNamespace(ctx, dc, dst); err != nil {
			return err
		}
		mapping[ns] = dst
	}
	labels, ann := r.marks()
	name := "lbdrill-" + runLabel(r.res.RunID)
	spec := map[string]any{"backupName": v.Backup, "namespaceMapping": mapping, "restorePVs": true,
		"includedNamespaces": toAnySlice(v.IncludedNamespaces), "includeClusterResources": false}
	obj := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "velero.io/v1", "kind": "Restore",
		"metadata": map[string]any{"name": name, "namespace": v.Namespace, "labels": toAny(labels), "annotations": toAny(ann)},
		"spec":     spec}}
	ri := dc.Resource(gvrVeleroRestores).Namespace(v.Namespace)
	if _, err := ri.Create(ctx, obj, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create Velero Restore %s/%s of backup %s: %w", v.Namespace, name, v.Backup, err)
	}
	r.veleroRestore = v.Namespace + "/" + name
	r.event(PhaseRestoreVelero, "Velero Restore %s/%s of backup %s created; waiting for Velero", v.Namespace, name, v.Backup)
	for {
		u, err := ri.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("Velero Restore %s/%s: %w", v.Namespace, name, err)
		}
		phase, _, _ := unstructured.NestedString(u.Object, "status", "phase")
		switch phase {
		case "Completed", "PartiallyFailed", "Failed", "FailedValidation":
			errs, _, _ := unstructured.NestedInt64(u.Object, "status", "errors")
			warns, _, _ := unstructured.NestedInt64(u.Object, "status", "warnings")
			r.veleroPhase = fmt.Sprintf("%s (%d errors, %d warnings)", phase, errs, warns)
			r.veleroOK = phase == "Completed"
			r.event(PhaseRestoreVelero, "Velero Restore %s/%s: %s", v.Namespace, name, r.veleroPhase)
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("Velero Restore %s/%s still %q: %w", v.Namespace, name, cmp.Or(phase, "New"), ctx.Err())
		case <-time.After(pollInterval):
		}
	}
}

func toAnySlice(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// appReady is the app ready phase: every Deployment and StatefulSet the
// drill restored has its replicas ready (status.readyReplicas at least
// spec.replicas, for the current generation).
func (r *runner) appReady(ctx context.Context) error {
	dc, err := dynamic.NewForConfig(restConfig(r.cluster.Access()))
	if err != nil {
		return err
	}
	var nss []string
	for _, dst := range r.manifests.nsMap {
		nss = append(nss, dst)
	}
	slices.Sort(nss)
	for {
		var waiting []string
		total := 0
		for _, ns := range nss {
			for _, gvr := range []schema.GroupVersionResource{gvrDeployments, gvrStatefulSets} {
				list, err := dc.Resource(gvr).Namespace(ns).List(ctx, metav1.ListOptions{})
				if err != nil {
					return fmt.Errorf("list %s in %s: %w", gvr.Resource, ns, err)
				}
				for _, u := range list.Items {
					total++
					want, found, _ := unstructured.NestedInt64(u.Object, "spec", "replicas")
					if !found {
						want = 1
					}
					ready, _, _ := unstructured.NestedInt64(u.Object, "status", "readyReplicas")
					observed, _, _ := unstructured.NestedInt64(u.Object, "status", "observedGeneration")
					if ready < want || observed < u.GetGeneration() {
						waiting = append(waiting, fmt.Sprintf("%s %s/%s (%d of %d ready)", u.GetKind(), ns, u.GetName(), ready, want))
					}
				}
			}
		}
		if len(waiting) == 0 {
			r.event(PhaseAppReady, "%d workloads ready", total)
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d of %d workloads not ready: %s: %w", len(waiting), total, firstN(waiting, 10), ctx.Err())
		case <-time.After(pollInterval):
		}
	}
}

// cleanup deletes what the drill created in an existing cluster: the
// Namespaces, VolumeSnapshotContents and the Velero Restore that carry
// both this run's label and its run ID annotation. Anything else is left
// alone, whatever its name.
func (r *runner) cleanup(ctx context.Context) {
	acc := r.cluster.Access()
	dc, err := dynamic.NewForConfig(restConfig(acc))
	if err != nil {
		r.log.Warn("clean up the drill's objects", "err", err)
		return
	}
	label, _ := r.marks()
	sel := metav1.ListOptions{LabelSelector: LabelDrillRun + "=" + label[LabelDrillRun]}
	ours := r.ours
	deleted := 0
	del := func(ri dynamic.ResourceInterface, what string) {
		list, err := ri.List(ctx, sel)
		if err != nil {
			if !apierrors.IsNotFound(err) {
				r.log.Warn("list the drill's objects to delete", "resource", what, "err", err)
			}
			return
		}
		for _, u := range list.Items {
			if !ours(u) {
				r.log.Warn("an object carries the drill's label but not its run ID; left alone", "resource", what, "name", u.GetName())
				continue
			}
			if err := ri.Delete(ctx, u.GetName(), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				r.log.Warn("delete the drill's object", "resource", what, "name", u.GetName(), "err", err)
				continue
			}
			deleted++
		}
	}
	del(dc.Resource(gvrNamespaces), "namespaces")
	// VolumeSnapshotContents are cluster-scoped: the ones the restore
	// returned, when they carry both marks.
	for _, c := range r.volumes {
		if c.Content == "" {
			continue
		}
		u, err := dc.Resource(gvrContents).Get(ctx, c.Content, metav1.GetOptions{})
		if err != nil || !r.ours(*u) {
			continue
		}
		if err := dc.Resource(gvrContents).Delete(ctx, c.Content, metav1.DeleteOptions{}); err == nil {
			deleted++
		}
	}
	if r.veleroRestore != "" {
		ns, _, _ := strings.Cut(r.veleroRestore, "/")
		del(dc.Resource(gvrVeleroRestores).Namespace(ns), "restores.velero.io")
	}
	r.event("", "deleted the %d objects the drill created in the scratch cluster (namespaces with everything in them, snapshot contents, the Velero Restore)", deleted)
}

// volumesCheck passes when every restored claim is Bound (restoreVolumes
// waited for it) and no claim failed.
func (r *runner) volumesCheck() evidence.Check {
	var names []string
	for _, c := range r.volumes {
		if c.Outcome == volumes.RestoreFailed {
			return fail(CheckVolumesBound, "claim %s/%s failed: %s", c.Namespace, c.Claim, c.Reason)
		}
		names = append(names, c.Namespace+"/"+c.Claim)
	}
	return pass(CheckVolumesBound, "%d claims restored from their recorded snapshots and Bound: %s", len(names), firstN(names, 10))
}

// veleroCheck passes when Velero reported the restore Completed.
func (r *runner) veleroCheck() evidence.Check {
	if r.veleroOK {
		return pass(CheckVelero, "Velero Restore %s: %s", r.veleroRestore, r.veleroPhase)
	}
	return fail(CheckVelero, "Velero Restore %s: %s", r.veleroRestore, r.veleroPhase)
}

// httpCheck fetches each URL until it answers its expected status or its
// timeout passes. Response bodies are never read into the report.
func (r *runner) httpCheck(ctx context.Context, c *config.HTTPCheck) evidence.Check {
	if !r.existing() {
		return fail(config.CheckHTTP, "the embedded scratch runs no pods, so no restored application can answer; drill with scratch type kubeconfig")
	}
	client := &http.Client{Timeout: 10 * time.Second}
	var good, bad []string
	for _, it := range c.Items {
		u := it.ResolveURL(r.mapNS)
		shown := redact(u)
		deadline := time.Now().Add(it.Timeout.Std())
		var last string
		for {
			t0 := time.Now()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
			if err != nil {
				last = err.Error()
				break
			}
			resp, err := client.Do(req)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == it.ExpectStatus {
					good = append(good, fmt.Sprintf("GET %s: %d in %s", shown, resp.StatusCode, time.Since(t0).Round(time.Millisecond)))
					last = ""
					break
				}
				last = fmt.Sprintf("status %d, want %d", resp.StatusCode, it.ExpectStatus)
			} else {
				last = err.Error()
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				break
			}
			select {
			case <-ctx.Done():
			case <-time.After(2 * time.Second):
			}
		}
		if last != "" {
			bad = append(bad, fmt.Sprintf("GET %s: %s (tried for %s)", shown, strings.ReplaceAll(last, u, shown), it.Timeout))
		}
	}
	if len(bad) > 0 {
		return fail(config.CheckHTTP, "%d of %d requests failed: %s; passed: %s", len(bad), len(c.Items), strings.Join(bad, "; "), listOrNone(good))
	}
	return pass(config.CheckHTTP, "%s", strings.Join(good, "; "))
}

// jobCheck runs each Job in the restored copy of its namespace and waits
// for it to complete. The Jobs are marked as the drill's and go with the
// namespace.
func (r *runner) jobCheck(ctx context.Context, c *config.JobCheck) evidence.Check {
	if r.cluster == nil || !r.existing() {
		return fail(config.CheckJob, "the embedded scratch runs no pods, so no Job can run; drill with scratch type kubeconfig")
	}
	dc, err := dynamic.NewForConfig(restConfig(r.cluster.Access()))
	if err != nil {
		return fail(config.CheckJob, "client: %v", err)
	}
	labels, ann := r.marks()
	var good, bad []string
	for _, it := range c.Items {
		ns := r.mapNS(it.Namespace)
		name := "lbdrill-check-" + it.Name // validate keeps it within 63
		cmd := toAnySlice(it.Command)
		job := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "batch/v1", "kind": "Job",
			"metadata": map[string]any{"name": name, "namespace": ns, "labels": toAny(labels), "annotations": toAny(ann)},
			"spec": map[string]any{
				"backoffLimit": int64(0), "activeDeadlineSeconds": int64(it.Timeout.Std().Seconds()),
				"template": map[string]any{
					"metadata": map[string]any{"labels": toAny(labels)},
					"spec": map[string]any{
						"restartPolicy":                "Never",
						"automountServiceAccountToken": false,
						"securityContext":              map[string]any{"runAsNonRoot": true, "runAsUser": int64(65532), "runAsGroup": int64(65532), "seccompProfile": map[string]any{"type": "RuntimeDefault"}},
						"containers": []any{map[string]any{
							"name": "check", "image": it.Image, "command": cmd,
							"securityContext": map[string]any{"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
								"capabilities": map[string]any{"drop": []any{"ALL"}}},
						}},
					},
				},
			}}}
		ri := dc.Resource(gvrJobs).Namespace(ns)
		if _, err := ri.Create(ctx, job, metav1.CreateOptions{}); err != nil {
			bad = append(bad, fmt.Sprintf("%s: create Job %s/%s: %v", it.Name, ns, name, err))
			continue
		}
		r.event(PhaseVerify, "job %s: Job %s/%s created (%s), waiting up to %s", it.Name, ns, name, it.Image, it.Timeout)
		outcome, err := waitJob(ctx, ri, name, it.Timeout.Std())
		if err != nil {
			bad = append(bad, fmt.Sprintf("%s: %v", it.Name, err))
			continue
		}
		good = append(good, fmt.Sprintf("%s: Job %s/%s %s", it.Name, ns, name, outcome))
	}
	if len(bad) > 0 {
		return fail(config.CheckJob, "%d of %d jobs did not succeed: %s; succeeded: %s", len(bad), len(c.Items), strings.Join(bad, "; "), listOrNone(good))
	}
	return pass(config.CheckJob, "%s", strings.Join(good, "; "))
}

// waitJob waits for the Job's Complete or Failed condition.
func waitJob(ctx context.Context, ri dynamic.ResourceInterface, name string, timeout time.Duration) (string, error) {
	t0 := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		u, err := ri.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return "", err
		}
		conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		for _, c := range conds {
			m, _ := c.(map[string]any)
			if m["status"] != "True" {
				continue
			}
			switch m["type"] {
			case "Complete":
				return fmt.Sprintf("completed in %s", time.Since(t0).Round(time.Second)), nil
			case "Failed":
				return "", fmt.Errorf("Job failed: %v: %v", m["reason"], m["message"])
			}
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("Job did not complete within %s (no kubelet ran it, or it is still running): %w", timeout, errors.Join(ctx.Err()))
		case <-time.After(pollInterval):
		}
	}
}

// redact returns u without its query, fragment or user information: the
// report is kept for years and read by auditors.
func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparsable URL)"
	}
	p.User, p.RawQuery, p.ForceQuery, p.Fragment = nil, "", false, ""
	return p.String()
}

// StaleDrillAge is how old the namespaces of an earlier run of the same
// Drill must be (beyond the Drill's timeout) for a new run to delete them
// as left by a run that crashed or was kept and forgotten.
var StaleDrillAge = 24 * time.Hour

// sweepStale deletes the Namespaces an earlier run of this Drill left in
// the existing cluster: both marks present, the run ID one of this
// Drill's, created more than the Drill's timeout plus StaleDrillAge ago.
func (r *runner) sweepStale(ctx context.Context) {
	dc, err := dynamic.NewForConfig(restConfig(r.cluster.Access()))
	if err != nil {
		return
	}
	list, err := dc.Resource(gvrNamespaces).List(ctx, metav1.ListOptions{LabelSelector: LabelDrillRun})
	if err != nil {
		r.log.Warn("look for namespaces earlier drill runs left", "err", err)
		return
	}
	cutoff := time.Now().Add(-StaleDrillAge - r.opts.Drill.Spec.Timeout.Std())
	prefix := r.opts.Drill.Metadata.Name + "-"
	for _, u := range list.Items {
		id := u.GetAnnotations()[AnnotationDrillRun]
		if id == "" || id == r.res.RunID || !strings.HasPrefix(id, prefix) || u.GetLabels()[LabelDrillRun] != runLabel(id) ||
			!u.GetCreationTimestamp().Time.Before(cutoff) || u.GetDeletionTimestamp() != nil {
			continue
		}
		if err := dc.Resource(gvrNamespaces).Delete(ctx, u.GetName(), metav1.DeleteOptions{}); err != nil {
			r.log.Warn("delete a namespace an earlier drill run left", "namespace", u.GetName(), "run", id, "err", err)
			continue
		}
		r.log.Warn("deleted a namespace an earlier drill run left (crashed, or kept and not cleaned up)", "namespace", u.GetName(), "run", id)
	}
}
