package manifests_test

import (
	"bytes"
	"io"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/lifeboat-dr/lifeboat/internal/source/manifests"
	"github.com/lifeboat-dr/lifeboat/internal/testenv"
)

// TestRestoreIntoEmptyCluster exports a seeded real cluster (CRDs and
// custom resources, RBAC, NetworkPolicies, admission policies, webhooks,
// Secrets, quotas) and restores the archive into a second, empty real
// kube-apiserver. A dry run admits everything and persists nothing. The
// restore then creates every object it does not skip, and each one, read
// back and stripped as an export strips it, equals the backup's document
// byte for byte. A second restore with --existing skip changes nothing
// (no resourceVersion moves). A namespace map restores ehr as ehr-copy.
// A changed byte in the archive is refused naming the member.
func TestRestoreIntoEmptyCluster(t *testing.T) {
	ctx := testContext(t)
	src := testenv.StartCluster(t)
	testenv.SeedCluster(t, src.RESTConfig(src.Token))
	e, err := manifests.Start(ctx, manifests.Options{Config: src.RESTConfig(src.Token)})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(e)
	e.Close()
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.Result()
	if err != nil {
		t.Fatal(err)
	}
	a, err := manifests.ReadArchive(bytes.NewReader(raw), res.IndexSHA256)
	if err != nil {
		t.Fatalf("ReadArchive: %v", err)
	}

	dst := testenv.StartCluster(t)
	cfg := dst.RESTConfig(dst.Token)
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	nsGVR := schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}

	plan, err := manifests.Restore(ctx, a, manifests.RestoreOptions{Config: cfg, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if plan.Counts[manifests.OutcomeCreated] == 0 {
		t.Fatalf("dry run: %v", plan.Counts)
	}
	if _, err := dc.Resource(nsGVR).Get(ctx, "ehr", metav1.GetOptions{}); err == nil {
		t.Fatal("the dry run created namespace ehr")
	}

	var done, total int
	got, err := manifests.Restore(ctx, a, manifests.RestoreOptions{Config: cfg, Progress: func(d, n int) { done, total = d, n }})
	if err != nil {
		t.Fatal(err)
	}
	if done != total || total != len(a.Index.Objects) {
		t.Fatalf("progress %d of %d, archive %d", done, total, len(a.Index.Objects))
	}
	for _, o := range got.Objects {
		if o.Outcome == manifests.OutcomeFailed {
			t.Errorf("failed: %s: %s", o.Path, o.Reason)
		}
	}
	t.Logf("restore: %v", got.Counts)
	created := 0
	var mismatched []string
	for i, o := range got.Objects {
		if o.Outcome != manifests.OutcomeCreated {
			continue
		}
		created++
		ent := entry(t, a, o.Path)
		gvr := schema.GroupVersionResource{Group: ent.Group, Version: ent.Version, Resource: ent.Resource}
		var ri dynamic.ResourceInterface = dc.Resource(gvr)
		if ent.Namespace != "" {
			ri = dc.Resource(gvr).Namespace(ent.Namespace)
		}
		live, err := ri.Get(ctx, ent.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("object %d (%s) restored but not served: %v", i, o.Path, err)
		}
		if !manifests.Equal(a, ent, live.Object) {
			mismatched = append(mismatched, o.Path)
		}
	}
	if len(mismatched) > 0 {
		t.Fatalf("%d of %d restored objects differ from the backup: %v", len(mismatched), created, mismatched)
	}
	for _, want := range []string{"core/v1/secrets/ehr/db.yaml", "lifeboat-test.dev/v1/feeds/ehr/hl7-inbound.yaml",
		"apiextensions.k8s.io/v1/customresourcedefinitions/_cluster/feeds.lifeboat-test.dev.yaml",
		"admissionregistration.k8s.io/v1/validatingwebhookconfigurations/_cluster/cronjob-guard.yaml"} {
		if o := find(got.Objects, want); o == nil || o.Outcome != manifests.OutcomeCreated {
			t.Errorf("%s: %+v, want created", want, o)
		}
	}
	rv := func() string {
		s, err := dc.Resource(schema.GroupVersionResource{Version: "v1", Resource: "secrets"}).Namespace("ehr").Get(ctx, "db", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return s.GetResourceVersion()
	}
	before := rv()
	again, err := manifests.Restore(ctx, a, manifests.RestoreOptions{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	if again.Counts[manifests.OutcomeCreated] != 0 || again.Counts[manifests.OutcomeUpdated] != 0 || again.Failed() != 0 || rv() != before {
		t.Fatalf("second restore with --existing skip changed something: %v", again.Counts)
	}

	mapped, err := manifests.Restore(ctx, a, manifests.RestoreOptions{Config: cfg, NamespaceMap: map[string]string{"ehr": "ehr-copy"}, IncludeNamespaces: []string{"ehr"}})
	if err != nil {
		t.Fatal(err)
	}
	if mapped.Failed() != 0 {
		t.Fatalf("namespace map: %v", mapped.Counts)
	}
	if _, err := dc.Resource(schema.GroupVersionResource{Version: "v1", Resource: "secrets"}).Namespace("ehr-copy").Get(ctx, "db", metav1.GetOptions{}); err != nil {
		t.Fatalf("ehr/db not restored as ehr-copy/db: %v", err)
	}

	// One changed byte in a member is refused, naming it.
	bad := bytes.Clone(raw)
	bad[bytes.Index(bad, []byte("apiVersion: "))+2] ^= 1 // inside the first document
	if _, err := manifests.ReadArchive(bytes.NewReader(bad), res.IndexSHA256); err == nil || !strings.Contains(err.Error(), "SHA-256") {
		t.Fatalf("a changed archive: %v", err)
	}
}

func entry(t *testing.T, a *manifests.Archive, path string) manifests.IndexEntry {
	t.Helper()
	for _, e := range a.Index.Objects {
		if e.Path == path {
			return e
		}
	}
	t.Fatalf("no index entry %s", path)
	return manifests.IndexEntry{}
}

func find(objs []manifests.ObjectResult, path string) *manifests.ObjectResult {
	for i := range objs {
		if objs[i].Path == path {
			return &objs[i]
		}
	}
	return nil
}
