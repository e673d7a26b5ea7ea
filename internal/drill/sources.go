package drill

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/hashicorp/vault/api"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/kube"
	"github.com/lifeboat-dr/lifeboat/internal/scratch"
	scratchvault "github.com/lifeboat-dr/lifeboat/internal/scratch/vault"
	"github.com/lifeboat-dr/lifeboat/internal/source/manifests"
	sourcevault "github.com/lifeboat-dr/lifeboat/internal/source/vault"
)

// Phases of the sources a drill restores besides etcd; each runs only
// when the Drill has the check that needs it.
const (
	PhaseRestoreManifests = "restore manifests"
	PhaseRestoreVault     = "restore vault"
)

// drillCheck returns the Drill's check of the given kind, if any.
func (r *runner) drillCheck(kind string) (config.Check, bool) {
	for _, c := range r.opts.Drill.Spec.Checks {
		if c.Kind() == kind {
			return c, true
		}
	}
	return config.Check{}, false
}

// restConfig is a client configuration for a scratch cluster.
func restConfig(acc scratch.Access) *rest.Config {
	if acc.RESTConfig != nil {
		cfg := rest.CopyConfig(acc.RESTConfig)
		cfg.QPS, cfg.Burst = kube.QPS, kube.Burst
		return cfg
	}
	return &rest.Config{Host: acc.Server, BearerToken: acc.Token, TLSClientConfig: rest.TLSClientConfig{CAData: acc.CA},
		QPS: kube.QPS, Burst: kube.Burst}
}

// manifestsRestore is what the restore manifests phase did, for the
// manifests check.
type manifestsRestore struct {
	archive *manifests.Archive
	result  manifests.RestoreResult
	access  scratch.Access
	// second is the empty scratch cluster started for the export when the
	// drill's own cluster was restored from etcd; nil otherwise.
	second scratch.Cluster
	// nsMap maps the export's namespaces to the drill's own, in an
	// existing cluster; nil otherwise.
	nsMap map[string]string
}

// restoreManifests is the restore manifests phase: the decrypted export
// is read back (every member against the index, the index against the
// authenticated manifest) and applied with the restore code into an empty
// scratch API server: the drill's own when the backup has no etcd
// snapshot, else a second one started here.
func (r *runner) restoreManifests(ctx context.Context, m catalog.Manifest, tarPath string, check *config.ManifestsCheck) error {
	if m.Manifests == nil {
		return fmt.Errorf("backup %s holds no manifests export", m.Backup)
	}
	f, err := os.Open(tarPath)
	if err != nil {
		return fmt.Errorf("read %s: %w", catalog.ArtifactManifests, err)
	}
	a, err := manifests.ReadArchive(f, m.Manifests.IndexSHA256)
	f.Close()
	os.Remove(tarPath) // the archive is in memory now
	if err != nil {
		return fmt.Errorf("backup %s: %s: %w: %w", m.Backup, catalog.ArtifactManifests, err, catalog.ErrVerification)
	}
	mr := &manifestsRestore{archive: a}
	r.manifests = mr
	ropts := manifests.RestoreOptions{ExcludeResources: check.ExcludeResources, Logger: r.log}
	switch {
	case r.cluster != nil && r.existing():
		mr.access = r.cluster.Access()
		dc, err := dynamic.NewForConfig(restConfig(mr.access))
		if err != nil {
			return err
		}
		if mr.nsMap, err = r.namespaceMap(ctx, dc); err != nil {
			return err
		}
		ropts.NamespaceMap, ropts.Contained = mr.nsMap, true
		ropts.Labels, ropts.Annotations = r.marks()
		r.event(PhaseRestoreManifests, "restoring the export's namespaced objects into %d namespaces of this run (lbdrill-%s-*), nothing cluster-wide", len(mr.nsMap), runLabel(r.res.RunID)[:8])
	case r.cluster != nil && r.clusterEmpty:
		mr.access = r.cluster.Access()
	default:
		r.event(PhaseRestoreManifests, "starting an empty scratch API server for the export (the drill's own holds the restored etcd)")
		c, err := r.opts.Scratch.Start(ctx, scratch.Request{
			WorkDir: filepath.Join(r.tmp, "scratch-manifests"), Now: r.now,
			Progress: func(p string) { r.event(PhaseRestoreManifests, "empty scratch: %s", p) },
		})
		if err != nil {
			return fmt.Errorf("start an empty scratch API server: %w", err)
		}
		mr.second, mr.access = c, c.Access()
	}
	r.event(PhaseRestoreManifests, "restoring %d objects into %s", len(a.Index.Objects), mr.access.Server)
	last := 0
	ropts.Config = restConfig(mr.access)
	ropts.Progress = func(done, total int) {
		if done == total || done-last >= 500 {
			last = done
			r.event(PhaseRestoreManifests, "%d of %d objects", done, total)
		}
	}
	mr.result, err = manifests.Restore(ctx, a, ropts)
	if err != nil {
		return err
	}
	c := mr.result.Counts
	r.event(PhaseRestoreManifests, "%d created, %d skipped, %d failed", c[manifests.OutcomeCreated], c[manifests.OutcomeSkipped], c[manifests.OutcomeFailed])
	return nil
}

// manifestsCheck compares every object the restore created, read back from
// the scratch API server and stripped as the export strips it, with its
// document in the export, per kind. It fails on an object that failed to
// restore, is not served or differs; objects skipped by the restore's rules
// (controller-owned, notRestored, or already made by the fresh API server)
// are counted in the detail, not compared.
func (r *runner) manifestsCheck(ctx context.Context) evidence.Check {
	const name = config.CheckManifests
	mr := r.manifests
	if mr == nil {
		return fail(name, "the export was not restored (see the restore manifests phase)")
	}
	dc, err := dynamic.NewForConfig(restConfig(mr.access))
	if err != nil {
		return fail(name, "client for the scratch API server: %v", err)
	}
	entries := make(map[string]manifests.IndexEntry, len(mr.archive.Index.Objects))
	for _, e := range mr.archive.Index.Objects {
		entries[e.Path] = e
	}
	type tally struct{ equal, created int }
	kinds := map[string]*tally{}
	var problems []string
	skipped := 0
	for _, o := range mr.result.Objects {
		switch o.Outcome {
		case manifests.OutcomeSkipped:
			skipped++
			continue
		case manifests.OutcomeFailed:
			problems = append(problems, fmt.Sprintf("%s %s failed to restore: %s", o.Kind, objectName(o.Namespace, o.Name), o.Reason))
			continue
		}
		kind := o.Kind
		if o.Group != "" {
			kind += "." + o.Group
		}
		t := kinds[kind]
		if t == nil {
			t = &tally{}
			kinds[kind] = t
		}
		t.created++
		e := entries[o.Path]
		ri := dc.Resource(schema.GroupVersionResource{Group: e.Group, Version: e.Version, Resource: e.Resource})
		var live map[string]any
		if e.Group == "" && e.Resource == "namespaces" && mr.nsMap != nil {
			u, err := ri.Get(ctx, mr.nsMap[e.Name], metav1.GetOptions{})
			if err != nil {
				problems = append(problems, fmt.Sprintf("Namespace %s restored as %s but not served: %v", e.Name, mr.nsMap[e.Name], err))
				continue
			}
			live = u.Object
		} else if e.Namespace != "" {
			u, err := ri.Namespace(o.Namespace).Get(ctx, e.Name, metav1.GetOptions{})
			if err == nil {
				live = u.Object
			} else {
				problems = append(problems, fmt.Sprintf("%s %s restored but not served: %v", o.Kind, objectName(e.Namespace, e.Name), err))
				continue
			}
		} else {
			u, err := ri.Get(ctx, e.Name, metav1.GetOptions{})
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s %s restored but not served: %v", o.Kind, e.Name, err))
				continue
			}
			live = u.Object
		}
		if mr.nsMap != nil {
			unmap(live, e, r.res.RunID, mr.nsMap)
		}
		if !manifests.Equal(mr.archive, e, live) {
			problems = append(problems, fmt.Sprintf("%s %s differs from its document in the export", o.Kind, objectName(e.Namespace, e.Name)))
			continue
		}
		t.equal++
	}
	names := make([]string, 0, len(kinds))
	for k := range kinds {
		names = append(names, k)
	}
	sort.Strings(names)
	per := make([]string, 0, len(names))
	equal, created := 0, 0
	for _, k := range names {
		per = append(per, fmt.Sprintf("%s %d/%d", k, kinds[k].equal, kinds[k].created))
		equal += kinds[k].equal
		created += kinds[k].created
	}
	where := "into the drill's empty scratch API server"
	switch {
	case mr.second != nil:
		where = "into a second, empty scratch API server"
	case mr.nsMap != nil:
		where = fmt.Sprintf("into %d namespaces of this run in the existing scratch cluster", len(mr.nsMap))
	}
	summary := fmt.Sprintf("restored %d of %d objects of the export %s; %d equal their document after stripping (%s); %d skipped by the restore's rules or made by the fresh API server",
		created, len(mr.archive.Index.Objects), where, equal, strings.Join(per, ", "), skipped)
	if len(problems) > 0 {
		return fail(name, "%d problems: %s; %s", len(problems), firstN(problems, 10), summary)
	}
	if created == 0 {
		return fail(name, "no object was restored: %s", summary)
	}
	return pass(name, "%s", summary)
}

// vaultRestore is what the restore vault phase did, for the vaultData
// check.
type vaultRestore struct {
	server  *scratchvault.Server
	art     sourcevault.KVArtifact
	results []sourcevault.KVResult
}

// restoreVault is the restore vault phase: the backup's KV v2 secrets
// (vault-kv.json, decrypted and checked against the manifest) are written
// into a scratch Vault with the restore code, each mount made as KV v2
// first.
func (r *runner) restoreVault(ctx context.Context, m catalog.Manifest, kvPath string) error {
	if m.Vault == nil || len(m.Vault.KV) == 0 {
		return fmt.Errorf("backup %s holds no Vault KV secrets (the manifest's vault section lists no kv paths)", m.Backup)
	}
	data, err := os.ReadFile(kvPath)
	os.Remove(kvPath)
	if err != nil {
		return fmt.Errorf("read %s: %w", catalog.ArtifactVaultKV, err)
	}
	art, err := sourcevault.ReadKVArtifact(bytes.NewReader(data))
	clear(data)
	if err != nil {
		return fmt.Errorf("backup %s: %s: %w: %w", m.Backup, catalog.ArtifactVaultKV, err, catalog.ErrVerification)
	}
	vr := &vaultRestore{art: art}
	r.vault = vr
	bin := r.opts.VaultBinary
	if bin == "" {
		exe, _ := os.Executable()
		if bin, err = scratchvault.Locate(os.Getenv, exe); err != nil {
			return err
		}
	}
	srv, err := scratchvault.Start(ctx, scratchvault.Options{Binary: bin, TempDir: r.tmp, Logger: r.log})
	if err != nil {
		return err
	}
	vr.server = srv
	mounts, err := srv.Client().Sys().ListMountsWithContext(ctx)
	if err != nil {
		return fmt.Errorf("scratch Vault: list mounts: %w", err)
	}
	for _, p := range art.Paths {
		if _, ok := mounts[p.Mount+"/"]; ok {
			continue
		}
		if err := srv.Client().Sys().MountWithContext(ctx, p.Mount, &api.MountInput{Type: "kv", Options: map[string]string{"version": "2"}}); err != nil {
			return fmt.Errorf("scratch Vault: mount KV v2 at %s: %w", p.Mount, err)
		}
		mounts[p.Mount+"/"] = nil
	}
	vr.results = sourcevault.RestoreKV(ctx, srv.Client(), art, false, false)
	written, failed := 0, 0
	for _, res := range vr.results {
		switch res.Outcome {
		case sourcevault.KVWritten:
			written++
		case sourcevault.KVFailed:
			failed++
		}
	}
	r.event(PhaseRestoreVault, "scratch Vault at %s: %d secrets written, %d failed", srv.Address(), written, failed)
	return nil
}

// vaultDataCheck reads every restored secret back from the scratch Vault
// and compares the SHA-256 of its data (canonical JSON) with the backed-up
// secret's; the count of secrets per path must equal the manifest's.
// Secrets are named by SecretRef (a hash), never by path or value.
func (r *runner) vaultDataCheck(ctx context.Context, m catalog.Manifest) evidence.Check {
	const name = config.CheckVaultData
	vr := r.vault
	if vr == nil || vr.server == nil {
		return fail(name, "the KV secrets were not restored (see the restore vault phase)")
	}
	var problems []string
	want := map[string]int{}
	if m.Vault != nil {
		for _, k := range m.Vault.KV {
			want[k.Path] = k.Secrets
		}
	}
	equal, total := 0, 0
	for _, p := range vr.art.Paths {
		if n, ok := want[p.Path]; !ok || n != p.Count {
			problems = append(problems, fmt.Sprintf("path %s holds %d secrets, the manifest says %d", p.Path, p.Count, n))
		}
		for _, s := range p.Secrets {
			if s.Data == nil {
				continue
			}
			total++
			ref := sourcevault.SecretRef(p.Mount + "/" + s.Path)
			sec, err := vr.server.Client().Logical().ReadWithContext(ctx, p.Mount+"/data/"+s.Path)
			if err != nil || sec == nil {
				problems = append(problems, fmt.Sprintf("secret %s not readable from the scratch Vault", ref))
				continue
			}
			got, _ := sec.Data["data"].(map[string]any)
			if digest(got) != digest(s.Data) {
				problems = append(problems, fmt.Sprintf("secret %s reads back with other data than the backup's", ref))
				continue
			}
			equal++
		}
	}
	for _, res := range vr.results {
		if res.Outcome == sourcevault.KVFailed {
			problems = append(problems, fmt.Sprintf("secret %s failed to restore", sourcevault.SecretRef(res.Mount+"/"+res.Path)))
		}
	}
	paths := make([]string, 0, len(vr.art.Paths))
	for _, p := range vr.art.Paths {
		paths = append(paths, fmt.Sprintf("%s (%d)", p.Path, p.Count))
	}
	summary := fmt.Sprintf("restored %s into a scratch Vault; %d of %d secrets read back with the backed-up data (SHA-256 of each secret's data compared)",
		strings.Join(paths, ", "), equal, total)
	if len(problems) > 0 {
		slices.Sort(problems)
		return fail(name, "%d problems: %s; %s", len(problems), firstN(problems, 10), summary)
	}
	if total == 0 {
		return fail(name, "the backup holds no secret with data: %s", summary)
	}
	return pass(name, "%s", summary)
}

// digest is the SHA-256 of v as JSON (map keys sorted by encoding/json).
func digest(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return "unencodable"
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// unmap undoes, on an object read back from an existing cluster, what the
// drill changed when it restored it there (its namespace or name, the
// metadata.name label of a Namespace, the run's marks), so that it can be
// compared with the export's document.
func unmap(live map[string]any, e manifests.IndexEntry, runID string, nsMap map[string]string) {
	md, _ := live["metadata"].(map[string]any)
	if md == nil {
		return
	}
	if subjects, ok := live["subjects"].([]any); ok && e.Group == "rbac.authorization.k8s.io" {
		back := make(map[string]string, len(nsMap))
		for src, dst := range nsMap {
			back[dst] = src
		}
		for _, x := range subjects {
			if sub, ok := x.(map[string]any); ok && sub["kind"] == "ServiceAccount" {
				if src, ok := back[fmt.Sprint(sub["namespace"])]; ok {
					sub["namespace"] = src
				}
			}
		}
	}
	if e.Namespace != "" {
		md["namespace"] = e.Namespace
	}
	if e.Group == "" && e.Resource == "namespaces" {
		md["name"] = e.Name
		if l, ok := md["labels"].(map[string]any); ok && l["kubernetes.io/metadata.name"] != nil {
			l["kubernetes.io/metadata.name"] = e.Name
		}
	}
	if l, ok := md["labels"].(map[string]any); ok && l[LabelDrillRun] == runLabel(runID) {
		delete(l, LabelDrillRun)
		if len(l) == 0 {
			delete(md, "labels")
		}
	}
	if a, ok := md["annotations"].(map[string]any); ok && a[AnnotationDrillRun] == runID {
		delete(a, AnnotationDrillRun)
		if len(a) == 0 {
			delete(md, "annotations")
		}
	}
}
