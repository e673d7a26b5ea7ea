package manifests_test

import (
	"archive/tar"
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/keys"
	"github.com/lifeboat-dr/lifeboat/internal/source/manifests"
	"github.com/lifeboat-dr/lifeboat/internal/testenv"
)

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// archive is a read manifests.tar.
type archive struct {
	raw     []byte
	order   []string
	members map[string][]byte
	index   manifests.Index
}

func (a *archive) has(path string) bool { _, ok := a.members[path]; return ok }

// doc decodes a member's YAML.
func (a *archive) doc(t *testing.T, path string) map[string]any {
	t.Helper()
	b, ok := a.members[path]
	if !ok {
		t.Fatalf("no member %s", path)
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return m
}

// readArchive reads and checks a manifests.tar: every member's digest is
// in the index, the index is last and its digest is res.IndexSHA256, and
// the counts in the index and res agree.
func readArchive(t *testing.T, raw []byte, res catalog.Manifests) *archive {
	t.Helper()
	a := &archive{raw: raw, members: map[string][]byte{}}
	tr := tar.NewReader(bytes.NewReader(raw))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("tar: %v", err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if _, dup := a.members[h.Name]; dup {
			t.Fatalf("tar: %s twice", h.Name)
		}
		if h.Mode != 0o600 || !h.ModTime.Equal(time.Unix(0, 0)) || h.Typeflag != tar.TypeReg {
			t.Fatalf("tar header of %s: %+v", h.Name, h)
		}
		a.order = append(a.order, h.Name)
		a.members[h.Name] = b
	}
	if len(a.order) == 0 || a.order[len(a.order)-1] != manifests.IndexMember {
		t.Fatalf("the index is not the last member: %v", a.order)
	}
	idx := a.members[manifests.IndexMember]
	if sum := sha256.Sum256(idx); hex.EncodeToString(sum[:]) != res.IndexSHA256 {
		t.Fatal("indexSHA256 is not the index member's digest")
	}
	if err := json.Unmarshal(idx, &a.index); err != nil {
		t.Fatal(err)
	}
	if a.index.Format != manifests.IndexFormat || a.index.Total != len(a.index.Objects) || a.index.Total != len(a.order)-1 || res.Objects != a.index.Total {
		t.Fatalf("index: format %q, total %d, %d objects, %d members, manifest objects %d",
			a.index.Format, a.index.Total, len(a.index.Objects), len(a.order), res.Objects)
	}
	counts := map[catalog.ObjectCount]int{}
	for i, e := range a.index.Objects {
		if e.Path != a.order[i] {
			t.Fatalf("index[%d] is %s, tar member %d is %s", i, e.Path, i, a.order[i])
		}
		if e.Path != manifests.MemberPath(e.Group, e.Version, e.Resource, e.Namespace, e.Name) {
			t.Fatalf("index[%d]: path %s does not follow the naming rule", i, e.Path)
		}
		if sum := sha256.Sum256(a.members[e.Path]); hex.EncodeToString(sum[:]) != e.SHA256 {
			t.Fatalf("index[%d]: %s digest mismatch", i, e.Path)
		}
		counts[catalog.ObjectCount{Group: e.Group, Version: e.Version, Kind: e.Kind, Namespace: e.Namespace}]++
	}
	if !slices.Equal(a.index.Counts, res.Counts) {
		t.Fatalf("index counts differ from the manifest's")
	}
	n := 0
	for _, c := range res.Counts {
		key := c
		key.Count = 0
		if counts[key] != c.Count {
			t.Fatalf("count %+v: index lists %d", c, counts[key])
		}
		n += c.Count
	}
	if n != res.Objects || len(counts) != len(res.Counts) {
		t.Fatalf("counts add up to %d in %d entries, objects %d in %d entries", n, len(res.Counts), res.Objects, len(counts))
	}
	if !slices.Equal(a.index.Skipped, res.Skipped) && !(len(a.index.Skipped) == 0 && len(res.Skipped) == 0) {
		t.Fatalf("index skipped %v, manifest skipped %v", a.index.Skipped, res.Skipped)
	}
	if !slices.Equal(a.index.Inconsistent, res.Inconsistent) {
		t.Fatalf("index inconsistent %v, manifest inconsistent %v", a.index.Inconsistent, res.Inconsistent)
	}
	return a
}

// export runs an export to its end.
func export(t *testing.T, ctx context.Context, opts manifests.Options) (*archive, catalog.Manifests) {
	t.Helper()
	e, err := manifests.Start(ctx, opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	defer e.Close()
	raw, err := io.ReadAll(e)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	res, err := e.Result()
	if err != nil {
		t.Fatalf("Result: %v", err)
	}
	return readArchive(t, raw, res), res
}

// listCounter counts list requests, and those with a continue token.
type listCounter struct {
	next             http.RoundTripper
	lists, continues atomic.Int64
}

func (c *listCounter) RoundTrip(req *http.Request) (*http.Response, error) {
	if q := req.URL.Query(); q.Has("limit") {
		c.lists.Add(1)
		if q.Get("continue") != "" {
			c.continues.Add(1)
		}
	}
	return c.next.RoundTrip(req)
}

func TestExportCluster(t *testing.T) {
	ctx := testContext(t)
	c := testenv.StartCluster(t)
	cfg := c.RESTConfig(c.Token)
	seed := testenv.SeedCluster(t, cfg)

	counter := &listCounter{}
	pcfg := rest.CopyConfig(cfg)
	pcfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { counter.next = rt; return counter })
	a, res := export(t, ctx, manifests.Options{Config: pcfg, PageSize: 2})
	if counter.continues.Load() < 10 {
		t.Fatalf("page size 2: only %d of %d lists continued", counter.continues.Load(), counter.lists.Load())
	}
	if len(res.Skipped) != 0 {
		t.Fatalf("skipped: %v", res.Skipped)
	}

	// Objects of every kind seeded, custom resources and the CRD included.
	for _, p := range []string{
		"core/v1/namespaces/_cluster/ehr.yaml", "core/v1/secrets/ehr/db.yaml", "core/v1/secrets/billing/db.yaml",
		"core/v1/configmaps/ehr/settings.yaml", "core/v1/configmaps/scratch/notes.yaml",
		"core/v1/services/ehr/web.yaml", "core/v1/services/ehr/db-headless.yaml",
		"core/v1/resourcequotas/ehr/compute.yaml", "core/v1/limitranges/billing/defaults.yaml",
		"apps/v1/deployments/ehr/web.yaml", "networking.k8s.io/v1/networkpolicies/ehr/default-deny.yaml",
		"rbac.authorization.k8s.io/v1/roles/ehr/reader.yaml", "rbac.authorization.k8s.io/v1/rolebindings/billing/reader.yaml",
		"rbac.authorization.k8s.io/v1/clusterroles/_cluster/lifeboat-seed-auditor.yaml",
		"rbac.authorization.k8s.io/v1/clusterroles/_cluster/system:basic-user.yaml",
		"admissionregistration.k8s.io/v1/validatingadmissionpolicies/_cluster/require-team-label.yaml",
		"admissionregistration.k8s.io/v1/validatingadmissionpolicybindings/_cluster/require-team-label.yaml",
		"admissionregistration.k8s.io/v1/validatingwebhookconfigurations/_cluster/cronjob-guard.yaml",
		"apiextensions.k8s.io/v1/customresourcedefinitions/_cluster/feeds.lifeboat-test.dev.yaml",
		"lifeboat-test.dev/v1/feeds/ehr/hl7-inbound.yaml", "lifeboat-test.dev/v1/feeds/billing/hl7-inbound.yaml",
	} {
		if !a.has(p) {
			t.Errorf("no member %s", p)
		}
	}
	// Default exclusions.
	for _, p := range a.order {
		if strings.Contains(p, "/events/") || strings.HasPrefix(p, "coordination.k8s.io/") ||
			strings.Contains(p, "/componentstatuses/") || strings.Contains(p, "/ipaddresses/") {
			t.Errorf("excluded by default, but exported: %s", p)
		}
	}
	// Members are sorted by resource.
	var prefixes []string
	for _, p := range a.order[:len(a.order)-1] {
		parts := strings.SplitN(p, "/", 4)
		if pre := strings.Join(parts[:3], "/"); len(prefixes) == 0 || prefixes[len(prefixes)-1] != pre {
			prefixes = append(prefixes, pre)
		}
	}
	if !slices.IsSorted(prefixes) || len(slices.Compact(slices.Clone(prefixes))) != len(prefixes) {
		t.Errorf("resources are not in order, or split: %v", prefixes)
	}

	// Stripping: no server-owned metadata and no status anywhere.
	for _, p := range a.order[:len(a.order)-1] {
		d := a.doc(t, p)
		md, _ := d["metadata"].(map[string]any)
		for _, f := range []string{"uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "selfLink", "deletionTimestamp"} {
			if _, ok := md[f]; ok {
				t.Fatalf("%s: metadata.%s not stripped", p, f)
			}
		}
		if _, ok := d["status"]; ok {
			t.Fatalf("%s: status not stripped", p)
		}
		if d["apiVersion"] == nil || d["kind"] == nil || md["name"] == nil {
			t.Fatalf("%s: no apiVersion, kind or name", p)
		}
	}
	web := a.doc(t, "core/v1/services/ehr/web.yaml")["spec"].(map[string]any)
	if _, ok := web["clusterIP"]; ok || web["clusterIPs"] != nil || web["ports"] == nil {
		t.Errorf("service ehr/web: clusterIP not reset: %v", web)
	}
	if hl := a.doc(t, "core/v1/services/ehr/db-headless.yaml")["spec"].(map[string]any); hl["clusterIP"] != "None" {
		t.Errorf("headless service lost clusterIP None: %v", hl)
	}
	secret := a.doc(t, "core/v1/secrets/ehr/db.yaml")
	if pw, _ := secret["data"].(map[string]any)["password"].(string); !strings.Contains(string(a.members["core/v1/secrets/ehr/db.yaml"]), pw) || pw == "" {
		t.Errorf("secret data missing")
	}
	feed := a.doc(t, "lifeboat-test.dev/v1/feeds/ehr/hl7-inbound.yaml")
	if feed["kind"] != "Feed" || feed["spec"].(map[string]any)["protocol"] != "HL7v2" {
		t.Errorf("custom resource: %v", feed)
	}
	// The Secret's value is in the tar (base64, as the API serves it).
	if !bytes.Contains(a.raw, []byte("data:\n  password: ")) {
		t.Errorf("secret document lacks its data")
	}

	// Counts for what was seeded.
	want := map[catalog.ObjectCount]bool{
		{Group: "", Version: "v1", Kind: "ConfigMap", Namespace: "ehr", Count: 1}:                           true,
		{Group: "", Version: "v1", Kind: "Secret", Namespace: "billing", Count: 1}:                          true,
		{Group: "", Version: "v1", Kind: "Service", Namespace: "ehr", Count: 2}:                             true,
		{Group: "apps", Version: "v1", Kind: "Deployment", Namespace: "ehr", Count: 1}:                      true,
		{Group: seed.CRD.Group, Version: "v1", Kind: "Feed", Namespace: "billing", Count: 1}:                true,
		{Group: "admissionregistration.k8s.io", Version: "v1", Kind: "ValidatingAdmissionPolicy", Count: 1}: true,
		{Group: "apiextensions.k8s.io", Version: "v1", Kind: "CustomResourceDefinition", Count: 1}:          true,
	}
	for _, c := range res.Counts {
		delete(want, c)
	}
	if len(want) > 0 {
		t.Errorf("counts lack %v", want)
	}

	// Policy objects: names and digests, equal to the index's; Namespaces
	// with their Pod Security labels; never a Secret.
	digest := map[string]string{}
	for _, e := range a.index.Objects {
		digest[e.Group+"|"+e.Kind+"|"+e.Namespace+"|"+e.Name] = e.SHA256
	}
	pol := map[string]catalog.PolicyObject{}
	for _, p := range res.Policies {
		key := p.Group + "|" + p.Kind + "|" + p.Namespace + "|" + p.Name
		pol[key] = p
		switch {
		case p.Kind == "Secret" || p.Kind == "ConfigMap":
			t.Fatalf("policy %s", key)
		case p.Kind == "Namespace":
			if _, sum := manifests.PodSecurityLabels(p.Labels); sum != p.SHA256 {
				t.Errorf("namespace %s: digest is not of its labels", p.Name)
			}
		case digest[key] != p.SHA256:
			t.Errorf("policy %s: digest differs from the index", key)
		}
	}
	if !slices.IsSortedFunc(res.Policies, func(a, b catalog.PolicyObject) int {
		return cmp.Or(cmp.Compare(a.Group, b.Group), cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	}) {
		t.Error("policies are not sorted")
	}
	for _, key := range []string{
		"rbac.authorization.k8s.io|ClusterRole||lifeboat-seed-auditor", "rbac.authorization.k8s.io|ClusterRoleBinding||lifeboat-seed-auditor",
		"rbac.authorization.k8s.io|Role|ehr|reader", "rbac.authorization.k8s.io|RoleBinding|billing|reader",
		"networking.k8s.io|NetworkPolicy|ehr|default-deny",
		"admissionregistration.k8s.io|ValidatingAdmissionPolicy||require-team-label",
		"admissionregistration.k8s.io|ValidatingAdmissionPolicyBinding||require-team-label",
		"admissionregistration.k8s.io|ValidatingWebhookConfiguration||cronjob-guard",
		"|ResourceQuota|ehr|compute", "|LimitRange|billing|defaults", "|Namespace||ehr", "|Namespace||scratch",
	} {
		if _, ok := pol[key]; !ok {
			t.Errorf("no policy object %s", key)
		}
	}
	ehr := pol["|Namespace||ehr"]
	if len(ehr.Labels) != 3 || ehr.Labels["pod-security.kubernetes.io/enforce"] != "restricted" || ehr.Version != "v1" {
		t.Errorf("namespace ehr policy: %+v", ehr)
	}
	if s := pol["|Namespace||scratch"]; s.Labels != nil || s.SHA256 != "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a" {
		t.Errorf("namespace scratch policy: %+v", s)
	}
	if billing := pol["|Namespace||billing"]; billing.Labels["pod-security.kubernetes.io/enforce"] != "baseline" || len(billing.Labels) != 1 {
		t.Errorf("namespace billing policy: %+v", billing)
	}

	// The manifest section validates as part of a manifest (its own
	// rules), and holds no object name but policies'.
	mj, _ := json.Marshal(res)
	for _, leak := range []string{"settings", "notes", "hl7-inbound", "\"db\"", seed.PHICanary} {
		if bytes.Contains(mj, []byte(leak)) {
			t.Errorf("the manifest section holds %q", leak)
		}
	}

	// The same state exports to the same bytes.
	a2, _ := export(t, ctx, manifests.Options{Config: cfg})
	if !bytes.Equal(a.raw, a2.raw) {
		for p, b := range a.members {
			if !bytes.Equal(a2.members[p], b) {
				t.Errorf("second export differs at %s", p)
			}
		}
		t.Fatal("a second export of the same state differs")
	}
}

func TestExportFilters(t *testing.T) {
	ctx := testContext(t)
	c := testenv.StartCluster(t)
	cfg := c.RESTConfig(c.Token)
	testenv.SeedCluster(t, cfg)

	t.Run("labelSelector", func(t *testing.T) {
		a, res := export(t, ctx, manifests.Options{Config: cfg, LabelSelector: testenv.SeedPartOf + "=ehr"})
		var got []string
		for _, e := range a.index.Objects {
			got = append(got, e.Path)
		}
		want := []string{
			"apps/v1/deployments/ehr/web.yaml",
			"core/v1/configmaps/ehr/settings.yaml",
			"core/v1/limitranges/ehr/defaults.yaml",
			"core/v1/namespaces/_cluster/ehr.yaml",
			"core/v1/resourcequotas/ehr/compute.yaml",
			"core/v1/secrets/ehr/db.yaml",
			"core/v1/services/ehr/db-headless.yaml",
			"core/v1/services/ehr/web.yaml",
			"lifeboat-test.dev/v1/feeds/ehr/hl7-inbound.yaml",
			"networking.k8s.io/v1/networkpolicies/ehr/default-deny.yaml",
			"rbac.authorization.k8s.io/v1/rolebindings/ehr/reader.yaml",
			"rbac.authorization.k8s.io/v1/roles/ehr/reader.yaml",
		}
		if !slices.Equal(got, want) {
			t.Fatalf("objects:\n got %v\nwant %v", got, want)
		}
		if len(res.Policies) != 6 || res.Objects != len(want) {
			t.Fatalf("policies %v, objects %d", res.Policies, res.Objects)
		}
	})
	t.Run("includeNamespaces", func(t *testing.T) {
		a, _ := export(t, ctx, manifests.Options{Config: cfg, IncludeNamespaces: []string{"billing", "scratch"}, PageSize: 1})
		nsSeen := map[string]bool{}
		for _, e := range a.index.Objects {
			if e.Namespace != "" {
				nsSeen[e.Namespace] = true
			}
			if e.Kind == "Namespace" && e.Name != "billing" && e.Name != "scratch" {
				t.Errorf("namespace %s exported", e.Name)
			}
		}
		if len(nsSeen) != 2 || !nsSeen["billing"] || !nsSeen["scratch"] {
			t.Errorf("namespaces of objects: %v", nsSeen)
		}
		for _, p := range []string{"core/v1/namespaces/_cluster/billing.yaml", "core/v1/configmaps/scratch/notes.yaml",
			"rbac.authorization.k8s.io/v1/clusterroles/_cluster/lifeboat-seed-auditor.yaml"} {
			if !a.has(p) {
				t.Errorf("no %s", p)
			}
		}
	})
	t.Run("exclude", func(t *testing.T) {
		a, _ := export(t, ctx, manifests.Options{Config: cfg, ExcludeNamespaces: []string{"ehr", "kube-system"},
			ExcludeResources: []string{"secrets", "feeds.lifeboat-test.dev", "clusterroles.rbac.authorization.k8s.io"}})
		for _, e := range a.index.Objects {
			if e.Namespace == "ehr" || e.Namespace == "kube-system" || (e.Kind == "Namespace" && e.Name == "ehr") ||
				e.Kind == "Secret" || e.Kind == "Feed" || e.Kind == "ClusterRole" {
				t.Errorf("exported %s", e.Path)
			}
		}
		for _, p := range []string{"core/v1/configmaps/billing/settings.yaml", "core/v1/namespaces/_cluster/billing.yaml",
			"rbac.authorization.k8s.io/v1/clusterrolebindings/_cluster/lifeboat-seed-auditor.yaml",
			"apiextensions.k8s.io/v1/customresourcedefinitions/_cluster/feeds.lifeboat-test.dev.yaml"} {
			if !a.has(p) {
				t.Errorf("no %s", p)
			}
		}
	})
	t.Run("badOptions", func(t *testing.T) {
		for _, opts := range []manifests.Options{
			{}, {Config: cfg, LabelSelector: "a in (b"}, {Config: cfg, PageSize: -1}, {Config: cfg, ExcludeResources: []string{".x"}},
		} {
			if _, err := manifests.Start(ctx, opts); err == nil {
				t.Errorf("Start(%+v): no error", opts)
			}
		}
	})
}

// failAfter fails every list request after the first n with a transport
// error.
type failAfter struct {
	next  http.RoundTripper
	n     int64
	lists atomic.Int64
}

var errInjected = errors.New("injected connection reset")

func (f *failAfter) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Query().Has("limit") && f.lists.Add(1) > f.n {
		return nil, errInjected
	}
	return f.next.RoundTrip(req)
}

// TestExportFailsMidway: a list that fails with a transport error ends
// the stream with that error (never a clean end of the tar), and Result
// reports it; a consumer that stops early can Close at any point.
func TestExportFailsMidway(t *testing.T) {
	ctx := testContext(t)
	c := testenv.StartCluster(t)
	cfg := c.RESTConfig(c.Token)
	testenv.SeedCluster(t, cfg)

	fa := &failAfter{n: 20}
	fcfg := rest.CopyConfig(cfg)
	fcfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { fa.next = rt; return fa })
	e, err := manifests.Start(ctx, manifests.Options{Config: fcfg, PageSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	raw, rerr := io.ReadAll(e)
	if rerr == nil || !errors.Is(rerr, errInjected) {
		t.Fatalf("read: %v after %d bytes, want the injected error", rerr, len(raw))
	}
	if _, err := e.Result(); !errors.Is(err, errInjected) {
		t.Fatalf("Result: %v", err)
	}
	e.Close()
	if bytes.Contains(raw, []byte(manifests.IndexMember)) {
		t.Fatal("a failed export wrote its index")
	}

	// Closing early stops the export.
	e, err = manifests.Start(ctx, manifests.Options{Config: cfg, PageSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(e, make([]byte, 1024)); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { e.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Close did not stop the export")
	}
	if _, err := e.Result(); err == nil {
		t.Fatal("Result of a closed export: no error")
	}
}

// expireContinue answers the first list of configmaps that carries a
// continue token as the API server does when etcd has compacted past the
// token's revision: 410 Gone, reason Expired, and (when inconsistent is
// set) a continue token that goes on from the same key at the latest
// revision (resourceVersion -1), which the real API server then serves.
// The watch cache of kube-apiserver 1.34 serves continued lists from its
// snapshots, so compacting etcd does not make a real one expire.
type expireContinue struct {
	next         http.RoundTripper
	inconsistent bool
	done         atomic.Bool
}

func (e *expireContinue) RoundTrip(req *http.Request) (*http.Response, error) {
	cont := req.URL.Query().Get("continue")
	if !strings.HasSuffix(req.URL.Path, "/configmaps") || cont == "" || !e.done.CompareAndSwap(false, true) {
		return e.next.RoundTrip(req)
	}
	raw, err := base64.RawURLEncoding.DecodeString(cont)
	if err != nil {
		return nil, fmt.Errorf("continue token: %w", err)
	}
	var tok map[string]any
	if err := json.Unmarshal(raw, &tok); err != nil {
		return nil, fmt.Errorf("continue token: %w", err)
	}
	tok["rv"] = -1
	raw, _ = json.Marshal(tok)
	st := metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusFailure,
		Message: "The provided continue parameter is too old to display a consistent list result.",
		Reason:  metav1.StatusReasonExpired, Code: http.StatusGone,
	}
	if e.inconsistent {
		st.ListMeta.Continue = base64.RawURLEncoding.EncodeToString(raw)
	}
	body, _ := json.Marshal(st)
	return &http.Response{StatusCode: http.StatusGone, Status: "410 Gone", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Content-Type": []string{"application/json"}}, Body: io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)), Request: req}, nil
}

// TestExportExpiredContinue: a continue token that expired mid-list is
// followed by the inconsistent continuation the 410 carries (every object
// once, the resource recorded as inconsistent in the index and the
// manifest section, and given as a skip, so the backup is partial); a 410
// without one records the resource as skipped, so the backup is partial.
func TestExportExpiredContinue(t *testing.T) {
	ctx := testContext(t)
	c := testenv.StartCluster(t)
	cfg := c.RESTConfig(c.Token)
	testenv.SeedConfigMaps(t, cfg, 30, 1, 16, 4)

	for _, inconsistent := range []bool{true, false} {
		ec := &expireContinue{inconsistent: inconsistent}
		ecfg := rest.CopyConfig(cfg)
		ecfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { ec.next = rt; return ec })
		a, res := export(t, ctx, manifests.Options{Config: ecfg, PageSize: 4, IncludeNamespaces: []string{"bulk-0"}})
		if !ec.done.Load() {
			t.Fatal("no continued list of configmaps")
		}
		var cms []string
		for _, e := range a.index.Objects {
			if e.Kind == "ConfigMap" {
				cms = append(cms, e.Name)
			}
		}
		if inconsistent {
			if len(cms) != 30 || !slices.Equal(a.index.Inconsistent, []string{"configmaps/v1"}) ||
				!slices.Equal(res.Inconsistent, []string{"configmaps/v1"}) || len(res.Skipped) != 0 {
				t.Fatalf("inconsistent continuation: %d configmaps, inconsistent %v (index %v), skipped %v",
					len(cms), res.Inconsistent, a.index.Inconsistent, res.Skipped)
			}
			want := catalog.Skip{Source: "manifests", Reason: "configmaps/v1: listed across an expired continue token, not a consistent snapshot; objects changed meanwhile may be missing"}
			if skips := res.Skips(); len(skips) != 1 || skips[0] != want {
				t.Fatalf("Skips: %v", skips)
			}
			// As part of a manifest: partial, with the resource named.
			if err := manifestWith(res, catalog.StatusPartial).Validate(); err != nil {
				t.Fatalf("a partial manifest with the section: %v", err)
			}
			if mj, _ := json.Marshal(res); !bytes.Contains(mj, []byte(`"inconsistent":["configmaps/v1"]`)) {
				t.Fatalf("the manifest section lacks inconsistent: %s", mj)
			}
			continue
		}
		want := []catalog.ResourceSkip{{Resource: "configmaps/v1", Reason: "namespace bulk-0: list expired after 4 objects"}}
		if len(cms) != 4 || !slices.Equal(res.Skipped, want) || len(a.index.Inconsistent) != 0 {
			t.Fatalf("expired without continuation: %d configmaps, skipped %v", len(cms), res.Skipped)
		}
		if skips := res.Skips(); len(skips) != 1 || skips[0] != (catalog.Skip{Source: "manifests", Reason: "configmaps/v1: namespace bulk-0: list expired after 4 objects"}) {
			t.Fatalf("Skips: %v", skips)
		}
		if err := manifestWith(res, catalog.StatusPartial).Validate(); err != nil {
			t.Fatalf("a partial manifest with the section: %v", err)
		}
	}
}

// manifestWith is a manifest holding section res, its skips and status.
func manifestWith(res catalog.Manifests, status string) *catalog.Manifest {
	sum := strings.Repeat("ab", 32)
	t0 := time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC)
	return &catalog.Manifest{
		Format: catalog.ManifestFormat, Backup: "cluster-20261126T010000Z-7f3a", Plan: "cluster", Status: status,
		Started: t0, Completed: t0.Add(time.Minute), RetainUntil: t0.Add(24 * time.Hour),
		KEK: keys.Ref{Provider: "local", Key: "k", Version: "1"}, DataKeyID: strings.Repeat("0f", 16),
		Artifacts: []catalog.Artifact{{Name: catalog.ArtifactManifests, Source: catalog.SourceManifests, Compression: "zstd",
			PlaintextSize: 10, PlaintextSHA256: sum, CiphertextSize: 20, CiphertextSHA256: sum}},
		Manifests: &res, Skipped: res.Skips(), Lifeboat: catalog.Lifeboat{Version: "test"}, MAC: strings.Repeat("cd", 32),
	}
}

// unavailable answers lists of resources whose path ends in suffix with
// 503 Service Unavailable, as the aggregator does when an APIService's
// backend is down (and as an overloaded API server may). The one list of
// APIServices that is not paged (the exporter's lookup) is answered with
// 403 when forbidAPIServices is set, or has the APIService named
// aggregate given a service, as if that group version were aggregated.
type unavailable struct {
	next               http.RoundTripper
	suffix             string
	forbidAPIServices  bool
	aggregate          string
	answered, lookedUp atomic.Int64
}

func status(req *http.Request, code int, reason metav1.StatusReason, msg string) *http.Response {
	st := metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusFailure,
		Message: msg, Reason: reason, Code: int32(code)}
	body, _ := json.Marshal(st)
	return &http.Response{StatusCode: code, Status: fmt.Sprintf("%d %s", code, http.StatusText(code)), Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Content-Type": []string{"application/json"}}, Body: io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)), Request: req}
}

func (u *unavailable) RoundTrip(req *http.Request) (*http.Response, error) {
	q := req.URL.Query()
	if req.URL.Path == "/apis/apiregistration.k8s.io/v1/apiservices" && !q.Has("limit") {
		u.lookedUp.Add(1)
		if u.forbidAPIServices {
			return status(req, http.StatusForbidden, metav1.StatusReasonForbidden, "apiservices is forbidden"), nil
		}
		resp, err := u.next.RoundTrip(req)
		if err != nil || resp.StatusCode != http.StatusOK || u.aggregate == "" {
			return resp, err
		}
		raw, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		var list unstructured.UnstructuredList
		if err := list.UnmarshalJSON(raw); err != nil {
			return nil, err
		}
		for i := range list.Items {
			if list.Items[i].GetName() == u.aggregate {
				if err := unstructured.SetNestedMap(list.Items[i].Object, map[string]any{"namespace": "default", "name": "feeds", "port": int64(443)}, "spec", "service"); err != nil {
					return nil, err
				}
			}
		}
		raw, err = list.MarshalJSON()
		if err != nil {
			return nil, err
		}
		resp.Body, resp.ContentLength = io.NopCloser(bytes.NewReader(raw)), int64(len(raw))
		resp.Header.Del("Content-Length")
		return resp, nil
	}
	if q.Has("limit") && strings.HasSuffix(req.URL.Path, u.suffix) {
		u.answered.Add(1)
		return status(req, http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, "the server is currently unable to handle the request"), nil
	}
	return u.next.RoundTrip(req)
}

// TestExportUnavailable: a 503 skips a resource only if an aggregated API
// serves it (its APIService names a service, or, if the APIServices cannot
// be read, its group is not built in); a 503 from the API server's own
// groups (core, built-in, CRDs) fails the export, since the API server
// itself is unavailable and skipping would hide whole resources.
func TestExportUnavailable(t *testing.T) {
	ctx := testContext(t)
	c := testenv.StartCluster(t)
	cfg := c.RESTConfig(c.Token)
	seed := testenv.SeedCluster(t, cfg)
	feedsAPIService := "v1." + seed.CRD.Group

	run := func(u *unavailable) (*archive, catalog.Manifests, error) {
		t.Helper()
		ucfg := rest.CopyConfig(cfg)
		ucfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { u.next = rt; return u })
		e, err := manifests.Start(ctx, manifests.Options{Config: ucfg, IncludeNamespaces: []string{"ehr"}})
		if err != nil {
			t.Fatalf("Start: %v", err)
		}
		defer e.Close()
		raw, rerr := io.ReadAll(e)
		res, err := e.Result()
		if err != nil {
			if rerr == nil || bytes.Contains(raw, []byte(manifests.IndexMember)) {
				t.Fatalf("a failed export ended its stream cleanly (%v) or wrote its index", rerr)
			}
			return nil, res, err
		}
		if u.answered.Load() == 0 {
			t.Fatalf("no list ended in %s", u.suffix)
		}
		return readArchive(t, raw, res), res, nil
	}

	for _, c := range []struct {
		name string
		u    *unavailable
	}{
		{"core", &unavailable{suffix: "/configmaps"}},
		{"built-in group", &unavailable{suffix: "/deployments"}},
		{"CRD", &unavailable{suffix: "/feeds"}},
		{"core, APIServices unreadable", &unavailable{suffix: "/configmaps", forbidAPIServices: true}},
		{"built-in group, APIServices unreadable", &unavailable{suffix: "/networkpolicies", forbidAPIServices: true}},
	} {
		_, res, err := run(c.u)
		if err == nil || !strings.Contains(err.Error(), "unavailable, and not an aggregated API") ||
			!strings.Contains(err.Error(), "the server is currently unable to handle the request") {
			t.Errorf("%s: a 503: err %v, skipped %v", c.name, err, res.Skipped)
		}
		if c.u.lookedUp.Load() != 1 {
			t.Errorf("%s: APIServices looked up %d times", c.name, c.u.lookedUp.Load())
		}
	}

	// The feeds' group version made aggregated: skipped, the backup partial.
	u := &unavailable{suffix: "/feeds", aggregate: feedsAPIService}
	a, res, err := run(u)
	if err != nil {
		t.Fatalf("aggregated: %v", err)
	}
	want := "namespace ehr: list: aggregated API unavailable (APIService " + feedsAPIService + ", service default/feeds): the server is currently unable to handle the request"
	if len(res.Skipped) != 1 || res.Skipped[0].Resource != "feeds."+seed.CRD.Group+"/v1" || res.Skipped[0].Reason != want {
		t.Fatalf("aggregated: skipped %+v", res.Skipped)
	}
	if a.has("lifeboat-test.dev/v1/feeds/ehr/hl7-inbound.yaml") || !a.has("core/v1/configmaps/ehr/settings.yaml") {
		t.Fatal("aggregated: feeds exported, or configmaps not")
	}
	if err := manifestWith(res, catalog.StatusPartial).Validate(); err != nil {
		t.Fatal(err)
	}

	// APIServices unreadable: a group that is not built in is taken as
	// aggregated.
	u = &unavailable{suffix: "/feeds", forbidAPIServices: true}
	_, res, err = run(u)
	if err != nil {
		t.Fatalf("not built in: %v", err)
	}
	if len(res.Skipped) != 1 || !strings.HasPrefix(res.Skipped[0].Reason, "namespace ehr: list: aggregated API unavailable (group "+seed.CRD.Group+" is not built in; APIServices unreadable): ") {
		t.Fatalf("not built in: skipped %+v", res.Skipped)
	}
}

// TestExportDiscoveryFailure: an aggregated API whose backend is missing
// fails discovery of its group version; the export records it as skipped
// and still exports everything else.
func TestExportDiscoveryFailure(t *testing.T) {
	ctx := testContext(t)
	c := testenv.StartCluster(t)
	cfg := c.RESTConfig(c.Token)
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	apiservices := schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}
	_, err = dyn.Resource(apiservices).Create(ctx, &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
		"metadata": map[string]any{"name": "v1.metrics.lifeboat-test.dev"},
		"spec": map[string]any{
			"group": "metrics.lifeboat-test.dev", "version": "v1", "groupPriorityMinimum": int64(100), "versionPriority": int64(10),
			"insecureSkipTLSVerify": true, "service": map[string]any{"namespace": "default", "name": "absent", "port": int64(443)},
		},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The aggregator needs a moment to notice the backend is missing.
	var res catalog.Manifests
	var a *archive
	deadline := time.Now().Add(30 * time.Second)
	for {
		a, res = export(t, ctx, manifests.Options{Config: cfg})
		if len(res.Skipped) > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("skipped: %+v", res.Skipped)
	if len(res.Skipped) != 1 || res.Skipped[0].Resource != "*.metrics.lifeboat-test.dev/v1" || !strings.HasPrefix(res.Skipped[0].Reason, "discovery failed: ") {
		t.Fatalf("skipped: %+v", res.Skipped)
	}
	if !a.has("apiregistration.k8s.io/v1/apiservices/_cluster/v1.metrics.lifeboat-test.dev.yaml") || !a.has("core/v1/namespaces/_cluster/default.yaml") {
		t.Fatal("the rest of the cluster was not exported")
	}
}
