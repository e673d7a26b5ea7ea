package manifests

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	corev1 "k8s.io/api/core/v1"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"
)

// FieldManager is the server-side apply field manager of a restore.
const FieldManager = "lifeboat-restore"

// Outcomes of one object in a restore.
const (
	OutcomeCreated = "created"
	OutcomeUpdated = "updated"
	OutcomeSkipped = "skipped"
	OutcomeFailed  = "failed"
)

// Existing policies: what a restore does with an object that is already
// in the target.
const (
	ExistingSkip   = "skip"
	ExistingUpdate = "update"
)

// maxTarMember bounds one member of a manifests tar; maxTar the whole.
const (
	maxTarMember = 64 << 20
	maxTar       = 4 << 30
)

// Archive is a manifests export read back: its index and its members,
// every member checked against the index's SHA-256 and the index against
// the digest the authenticated catalog manifest gives.
type Archive struct {
	Index   Index
	members map[string][]byte
}

// ReadArchive reads a decrypted manifests.tar (docs/format.md §6.1). The
// index member's SHA-256 must be indexSHA256 (from the manifest, which its
// MAC authenticates), every document member must be listed in the index
// with its SHA-256, and every index entry must have its member: a tar that
// differs in any byte from what the backup wrote is refused, naming the
// member.
func ReadArchive(r io.Reader, indexSHA256 string) (*Archive, error) {
	a := &Archive{members: map[string][]byte{}}
	tr := tar.NewReader(io.LimitReader(r, maxTar))
	var index []byte
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("manifests archive: read: %w", err)
		}
		if h.Typeflag != tar.TypeReg {
			return nil, fmt.Errorf("manifests archive: member %q is not a regular file", h.Name)
		}
		data, err := io.ReadAll(io.LimitReader(tr, maxTarMember+1))
		if err != nil {
			return nil, fmt.Errorf("manifests archive: read %s: %w", h.Name, err)
		}
		if len(data) > maxTarMember {
			return nil, fmt.Errorf("manifests archive: member %s is larger than %d bytes", h.Name, maxTarMember)
		}
		if h.Name == IndexMember {
			index = data
			continue
		}
		if _, dup := a.members[h.Name]; dup {
			return nil, fmt.Errorf("manifests archive: member %s appears twice", h.Name)
		}
		a.members[h.Name] = data
	}
	if index == nil {
		return nil, fmt.Errorf("manifests archive: no %s", IndexMember)
	}
	if got := sum(index); got != indexSHA256 {
		return nil, fmt.Errorf("manifests archive: %s has SHA-256 %s, the manifest says %s", IndexMember, got, indexSHA256)
	}
	if err := json.Unmarshal(index, &a.Index); err != nil || a.Index.Format != IndexFormat {
		return nil, fmt.Errorf("manifests archive: %s is not a %s index", IndexMember, IndexFormat)
	}
	if a.Index.Total != len(a.Index.Objects) || len(a.members) != len(a.Index.Objects) {
		return nil, fmt.Errorf("manifests archive: the index lists %d objects (total %d), the archive holds %d", len(a.Index.Objects), a.Index.Total, len(a.members))
	}
	for _, e := range a.Index.Objects {
		data, ok := a.members[e.Path]
		if !ok {
			return nil, fmt.Errorf("manifests archive: %s is in the index but not in the archive", e.Path)
		}
		if got := sum(data); got != e.SHA256 {
			return nil, fmt.Errorf("manifests archive: %s has SHA-256 %s, the index says %s", e.Path, got, e.SHA256)
		}
		if MemberPath(e.Group, e.Version, e.Resource, e.Namespace, e.Name) != e.Path {
			return nil, fmt.Errorf("manifests archive: index entry %s does not name its own path", e.Path)
		}
	}
	return a, nil
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// Object returns the decoded document of an index entry.
func (a *Archive) Object(e IndexEntry) (map[string]any, error) {
	var obj map[string]any
	if err := yaml.Unmarshal(a.members[e.Path], &obj); err != nil {
		return nil, fmt.Errorf("manifests archive: %s does not decode", e.Path)
	}
	return obj, nil
}

// RestoreOptions configure Restore.
type RestoreOptions struct {
	// Config reaches the target API server. Required.
	Config *rest.Config
	// NamespaceMap renames namespaces: objects of a (and the Namespace a)
	// go to b.
	NamespaceMap map[string]string
	// IncludeNamespaces, when set, restores only namespaced objects (and
	// Namespaces) of these source namespaces; ExcludeNamespaces leaves
	// these out. Cluster-scoped objects are restored either way.
	IncludeNamespaces, ExcludeNamespaces []string
	// IncludeResources, when set, restores only these resources
	// ("deployments", or "deployments.apps" for one group);
	// ExcludeResources leaves these out.
	IncludeResources, ExcludeResources []string
	// Existing is ExistingSkip (default) or ExistingUpdate.
	Existing string
	// Contained restores only namespaced objects of namespaces
	// NamespaceMap renames, and those Namespaces: nothing cluster-wide and
	// nothing under a source namespace's own name (a drill into an
	// existing cluster).
	Contained bool
	// Labels and Annotations are added to every object restored (a drill
	// marks what it creates, so that it deletes only that).
	Labels, Annotations map[string]string
	// DryRun sends every write with dryRun=All: the API server admits and
	// validates it, and persists nothing. The plan of a restore.
	DryRun bool
	// EstablishTimeout bounds the wait for restored CRDs to be
	// Established; zero means one minute.
	EstablishTimeout time.Duration
	// Progress, when set, is called after each object.
	Progress func(done, total int)
	// Logger receives counts and failures; object contents are never
	// logged.
	Logger *slog.Logger
}

// ObjectResult is what became of one object.
type ObjectResult struct {
	Path      string `json:"path"`
	Group     string `json:"group"`
	Resource  string `json:"resource"`
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	Outcome   string `json:"outcome"`
	// Reason says why an object was skipped or failed (for a failure, the
	// API's reason and message, which name the field at fault).
	Reason string `json:"reason,omitempty"`
}

// KindCount counts the outcomes of one kind.
type KindCount struct {
	Group    string         `json:"group"`
	Kind     string         `json:"kind"`
	Outcomes map[string]int `json:"outcomes"`
}

// RestoreResult is what Restore did.
type RestoreResult struct {
	Objects []ObjectResult `json:"objects"`
	// Counts totals Objects by outcome; Kinds by kind, in restore order.
	Counts map[string]int `json:"counts"`
	Kinds  []KindCount    `json:"kinds"`
	DryRun bool           `json:"dryRun"`
}

// Failed reports how many objects failed.
func (r RestoreResult) Failed() int { return r.Counts[OutcomeFailed] }

// notRestored are resources a restore never writes, and why: they belong
// to the cluster they were read from, or a controller rebuilds them.
var notRestored = map[string]string{
	"nodes":                           "nodes belong to the source cluster's machines",
	"events":                          "events are not restored",
	"events.events.k8s.io":            "events are not restored",
	"leases.coordination.k8s.io":      "leases are leader-election state of the source cluster",
	"componentstatuses":               "computed, not stored",
	"endpoints":                       "rebuilt by the endpoints controller from Services",
	"endpointslices.discovery.k8s.io": "rebuilt by the endpointslice controller from Services",
	"controllerrevisions.apps":        "rebuilt by the workload controllers",
	"certificatesigningrequests.certificates.k8s.io": "requests of the source cluster's clients",
	"ipaddresses.networking.k8s.io":                  "ClusterIP allocations of the source cluster",
	"servicecidrs.networking.k8s.io":                 "the target cluster's own ranges",
	"persistentvolumes":                              "bound to the source cluster's storage (a restored PV whose claim UID matches nothing is Released, and with reclaimPolicy Delete the provisioner deletes the real disk); claims are restored with their data by `restore volumes`",
	"volumeattachments.storage.k8s.io":               "attachments to the source cluster's nodes",
	"csinodes.storage.k8s.io":                        "per-node CSI state of the source cluster",
}

// rank orders resources so that what others depend on comes first, and
// what could block the restore (webhooks, admission policies, aggregated
// APIs) comes last.
func rank(group, resource string) int {
	switch group + "/" + resource {
	case "apiextensions.k8s.io/customresourcedefinitions":
		return 0
	case "/namespaces":
		return 1
	case "/resourcequotas", "/limitranges", "networking.k8s.io/networkpolicies":
		return 2
	case "storage.k8s.io/storageclasses", "snapshot.storage.k8s.io/volumesnapshotclasses", "scheduling.k8s.io/priorityclasses":
		return 3
	case "/persistentvolumes", "/persistentvolumeclaims":
		return 4
	case "rbac.authorization.k8s.io/clusterroles", "rbac.authorization.k8s.io/roles":
		return 5
	case "rbac.authorization.k8s.io/clusterrolebindings", "rbac.authorization.k8s.io/rolebindings":
		return 6
	case "/serviceaccounts":
		return 7
	case "/secrets", "/configmaps":
		return 8
	case "apps/deployments", "apps/statefulsets", "apps/daemonsets", "apps/replicasets", "batch/jobs", "batch/cronjobs", "/pods", "/replicationcontrollers":
		return 9
	case "/services":
		return 10
	case "admissionregistration.k8s.io/mutatingwebhookconfigurations", "admissionregistration.k8s.io/validatingwebhookconfigurations",
		"admissionregistration.k8s.io/validatingadmissionpolicies", "admissionregistration.k8s.io/validatingadmissionpolicybindings",
		"admissionregistration.k8s.io/mutatingadmissionpolicies", "admissionregistration.k8s.io/mutatingadmissionpolicybindings",
		"apiregistration.k8s.io/apiservices":
		return 12
	}
	return 11
}

func resourceName(group, resource string) string {
	if group == "" {
		return resource
	}
	return resource + "." + group
}

// Restore applies the archive's objects to the target API server with
// server-side apply (field manager FieldManager), in dependency order
// (rank), and reports each object's outcome. An object that fails does not
// stop the restore; the caller judges the result (RestoreResult.Failed).
//
// What it changes in each object: the namespace (NamespaceMap), and
// ownerReferences are dropped (they carry the source cluster's UIDs; the
// garbage collector would delete a dependant whose owner UID does not
// exist). Objects a controller owns (an ownerReference with controller:
// true, such as a Deployment's ReplicaSets and their Pods) are skipped: the
// restored owner recreates them. Resources in notRestored are skipped, as
// are the API server's own local APIServices.
func Restore(ctx context.Context, a *Archive, o RestoreOptions) (RestoreResult, error) {
	res := RestoreResult{Counts: map[string]int{}, DryRun: o.DryRun}
	if o.Config == nil {
		return res, errors.New("restore manifests: no target API server")
	}
	switch o.Existing {
	case "":
		o.Existing = ExistingSkip
	case ExistingSkip, ExistingUpdate:
	default:
		return res, fmt.Errorf("restore manifests: existing %q: want %s or %s", o.Existing, ExistingSkip, ExistingUpdate)
	}
	if o.EstablishTimeout <= 0 {
		o.EstablishTimeout = time.Minute
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg := rest.CopyConfig(o.Config)
	cfg.UserAgent = FieldManager
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return res, fmt.Errorf("restore manifests: client: %w", err)
	}
	entries := slices.Clone(a.Index.Objects)
	slices.SortStableFunc(entries, func(x, y IndexEntry) int { return rank(x.Group, x.Resource) - rank(y.Group, y.Resource) })
	kinds := map[string]*KindCount{}
	var crds []string
	for i, e := range entries {
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("restore manifests: stopped after %d of %d objects: %w", i, len(entries), err)
		}
		if len(crds) > 0 && rank(e.Group, e.Resource) > 0 {
			// Custom resources need their CRDs Established first.
			if err := waitEstablished(ctx, dc, crds, o.EstablishTimeout, o.DryRun); err != nil {
				return res, fmt.Errorf("restore manifests: %w", err)
			}
			crds = nil
		}
		r := restoreOne(ctx, dc, a, e, o)
		if r.Outcome != OutcomeFailed && !o.DryRun && e.Group == "apiextensions.k8s.io" && e.Resource == "customresourcedefinitions" {
			crds = append(crds, e.Name)
		}
		res.Objects = append(res.Objects, r)
		res.Counts[r.Outcome]++
		key := e.Group + "/" + e.Kind
		k, ok := kinds[key]
		if !ok {
			k = &KindCount{Group: e.Group, Kind: e.Kind, Outcomes: map[string]int{}}
			kinds[key] = k
			res.Kinds = append(res.Kinds, KindCount{})
		}
		k.Outcomes[r.Outcome]++
		if r.Outcome == OutcomeFailed {
			log.Warn("object not restored", "resource", resourceName(e.Group, e.Resource), "reason", r.Reason)
		}
		if o.Progress != nil {
			o.Progress(i+1, len(entries))
		}
	}
	if len(crds) > 0 {
		if err := waitEstablished(ctx, dc, crds, o.EstablishTimeout, o.DryRun); err != nil {
			return res, fmt.Errorf("restore manifests: %w", err)
		}
	}
	// Kinds in restore order.
	res.Kinds = res.Kinds[:0]
	seen := map[string]bool{}
	for _, e := range entries {
		key := e.Group + "/" + e.Kind
		if !seen[key] {
			seen[key] = true
			res.Kinds = append(res.Kinds, *kinds[key])
		}
	}
	log.Info("manifests restored", "objects", len(entries), "created", res.Counts[OutcomeCreated], "updated", res.Counts[OutcomeUpdated],
		"skipped", res.Counts[OutcomeSkipped], "failed", res.Counts[OutcomeFailed], "dryRun", o.DryRun)
	return res, nil
}

// restoreOne restores one object.
func restoreOne(ctx context.Context, dc dynamic.Interface, a *Archive, e IndexEntry, o RestoreOptions) ObjectResult {
	r := ObjectResult{Path: e.Path, Group: e.Group, Resource: e.Resource, Kind: e.Kind, Namespace: e.Namespace, Name: e.Name}
	skip := func(why string) ObjectResult { r.Outcome, r.Reason = OutcomeSkipped, why; return r }
	fail := func(why string) ObjectResult { r.Outcome, r.Reason = OutcomeFailed, why; return r }
	name := resourceName(e.Group, e.Resource)
	if why, ok := notRestored[name]; ok {
		if why == "" {
			why = "not restored"
		}
		return skip(why)
	}
	if !selected(name, e.Resource, o.IncludeResources, o.ExcludeResources) {
		return skip("resource not selected")
	}
	isClaim := e.Group == "" && e.Resource == "persistentvolumeclaims"
	if isClaim && !slices.Contains(o.IncludeResources, "persistentvolumeclaims") {
		// Restored empty, a claim would shadow the one `restore volumes`
		// makes from its snapshot (which never overwrites a claim).
		return skip("claims are restored with their data by `restore volumes`; --include-resource persistentvolumeclaims restores it empty")
	}
	srcNS := e.Namespace
	if e.Group == "" && e.Resource == "namespaces" {
		srcNS = e.Name
	}
	if srcNS != "" && !selected(srcNS, srcNS, o.IncludeNamespaces, o.ExcludeNamespaces) {
		return skip("namespace not selected")
	}
	if o.Contained {
		if srcNS == "" {
			return skip("cluster-scoped: not restored into an existing cluster")
		}
		if _, ok := o.NamespaceMap[srcNS]; !ok {
			return skip("namespace not mapped: not restored into an existing cluster")
		}
	}
	obj, err := a.Object(e)
	if err != nil {
		return fail(err.Error())
	}
	u := &unstructured.Unstructured{Object: obj}
	for _, ref := range u.GetOwnerReferences() {
		if ref.Controller != nil && *ref.Controller {
			return skip(fmt.Sprintf("owned by %s %s, which recreates it", ref.Kind, ref.Name))
		}
	}
	if e.Group == "apiregistration.k8s.io" && e.Resource == "apiservices" {
		if svc, _, _ := unstructured.NestedMap(obj, "spec", "service"); svc == nil {
			return skip("a local APIService the API server registers itself")
		}
	}
	u.SetOwnerReferences(nil)
	if isClaim {
		// A new, empty volume: not the source cluster's PV, nor its
		// binding.
		unstructured.RemoveNestedField(u.Object, "spec", "volumeName")
		ann := u.GetAnnotations()
		for _, k := range []string{"pv.kubernetes.io/bind-completed", "pv.kubernetes.io/bound-by-controller", "volume.kubernetes.io/selected-node"} {
			delete(ann, k)
		}
		u.SetAnnotations(ann)
	}
	ns := e.Namespace
	if m, ok := o.NamespaceMap[ns]; ok && ns != "" {
		ns = m
		u.SetNamespace(ns)
	}
	if e.Group == "" && e.Resource == "namespaces" {
		if m, ok := o.NamespaceMap[e.Name]; ok {
			u.SetName(m)
			if l := u.GetLabels(); l != nil && l["kubernetes.io/metadata.name"] != "" {
				l["kubernetes.io/metadata.name"] = m
				u.SetLabels(l)
			}
		}
	}
	if len(o.NamespaceMap) > 0 && e.Group == "rbac.authorization.k8s.io" && (e.Resource == "rolebindings" || e.Resource == "clusterrolebindings") {
		mapSubjects(u.Object, o.NamespaceMap, o.Contained)
	}
	if len(o.Labels) > 0 {
		l := u.GetLabels()
		if l == nil {
			l = map[string]string{}
		}
		maps.Copy(l, o.Labels)
		u.SetLabels(l)
	}
	if len(o.Annotations) > 0 {
		an := u.GetAnnotations()
		if an == nil {
			an = map[string]string{}
		}
		maps.Copy(an, o.Annotations)
		u.SetAnnotations(an)
	}
	r.Namespace = ns
	gvr := schema.GroupVersionResource{Group: e.Group, Version: e.Version, Resource: e.Resource}
	var ri dynamic.ResourceInterface = dc.Resource(gvr)
	if ns != "" {
		ri = dc.Resource(gvr).Namespace(ns)
	}
	_, err = ri.Get(ctx, u.GetName(), metav1.GetOptions{})
	exists := err == nil
	switch {
	case exists && o.Existing == ExistingSkip:
		return skip("exists in the target (--existing skip)")
	case err != nil && !apierrors.IsNotFound(err):
		return fail(apiReason(err))
	}
	body, err := json.Marshal(u.Object)
	if err != nil {
		return fail("cannot encode the object")
	}
	opts := metav1.PatchOptions{FieldManager: FieldManager, Force: ptrTrue()}
	if o.DryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	if _, err := ri.Patch(ctx, u.GetName(), types.ApplyPatchType, body, opts); err != nil {
		return fail(apiReason(err))
	}
	r.Outcome = OutcomeCreated
	if exists {
		r.Outcome = OutcomeUpdated
	}
	return r
}

func ptrTrue() *bool { t := true; return &t }

// selected applies an include list (empty: all) and an exclude list to a
// name, matched as full or short.
func selected(full, short string, include, exclude []string) bool {
	in := func(list []string) bool { return slices.Contains(list, full) || slices.Contains(list, short) }
	if len(include) > 0 && !in(include) {
		return false
	}
	return !in(exclude)
}

// apiReason is the API's reason and message for a failed write; it names
// the field at fault and never holds the object's data.
func apiReason(err error) string {
	var st apierrors.APIStatus
	if errors.As(err, &st) {
		s := st.Status()
		return fmt.Sprintf("%s: %s", s.Reason, strings.TrimSpace(s.Message))
	}
	return err.Error()
}

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// waitEstablished waits until every named CRD has condition Established.
func waitEstablished(ctx context.Context, dc dynamic.Interface, names []string, timeout time.Duration, dryRun bool) error {
	if dryRun {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for _, n := range names {
		for {
			crd, err := dc.Resource(crdGVR).Get(ctx, n, metav1.GetOptions{})
			if err == nil && established(crd) {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("CustomResourceDefinition %s not Established within %s", n, timeout)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

func established(crd *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "Established" && m["status"] == "True" {
			return true
		}
	}
	return false
}

// Equal reports whether a restored object, read back from the target and
// stripped as an export strips it, has the same document as the archive's
// member: the comparison a drill and the restore test make.
func Equal(a *Archive, e IndexEntry, live map[string]any) bool {
	Strip(e.Group, e.Resource, live)
	doc, err := yaml.Marshal(live)
	return err == nil && bytes.Equal(doc, a.members[e.Path])
}

// Claims returns the archive's PersistentVolumeClaims by
// "namespace/name", for restoring volumes with their claims' specs.
func (a *Archive) Claims() (map[string]*corev1.PersistentVolumeClaim, error) {
	claims := map[string]*corev1.PersistentVolumeClaim{}
	for _, e := range a.Index.Objects {
		if e.Group != "" || e.Resource != "persistentvolumeclaims" {
			continue
		}
		obj, err := a.Object(e)
		if err != nil {
			return nil, err
		}
		b, err := json.Marshal(obj)
		if err != nil {
			return nil, fmt.Errorf("claim %s/%s: %w", e.Namespace, e.Name, err)
		}
		var pvc corev1.PersistentVolumeClaim
		if err := json.Unmarshal(b, &pvc); err != nil {
			return nil, fmt.Errorf("claim %s/%s: %w", e.Namespace, e.Name, err)
		}
		claims[e.Namespace+"/"+e.Name] = &pvc
	}
	return claims, nil
}

// mapSubjects moves a binding's ServiceAccount subjects with their
// namespaces (a restored binding grants the restored accounts, not the
// source namespace's); when contained, a ServiceAccount of a namespace the
// map does not name is dropped, so that a binding restored into an
// existing cluster grants nothing to that cluster's own accounts.
func mapSubjects(obj map[string]any, nsMap map[string]string, contained bool) {
	subjects, ok := obj["subjects"].([]any)
	if !ok {
		return
	}
	kept := subjects[:0]
	for _, x := range subjects {
		sub, ok := x.(map[string]any)
		if !ok || sub["kind"] != "ServiceAccount" {
			kept = append(kept, x)
			continue
		}
		ns, _ := sub["namespace"].(string)
		if m, ok := nsMap[ns]; ok {
			sub["namespace"] = m
		} else if contained {
			continue
		}
		kept = append(kept, sub)
	}
	obj["subjects"] = kept
}
