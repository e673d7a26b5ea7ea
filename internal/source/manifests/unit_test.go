package manifests

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"reflect"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
)

func TestStrip(t *testing.T) {
	obj := map[string]any{
		"apiVersion": "v1", "kind": "Service",
		"metadata": map[string]any{
			"name": "web", "namespace": "ehr", "uid": "u", "resourceVersion": "7", "generation": int64(3),
			"creationTimestamp": "2026-01-01T00:00:00Z", "managedFields": []any{map[string]any{}},
			"selfLink": "/api/v1/x", "deletionTimestamp": "2026-01-02T00:00:00Z", "deletionGracePeriodSeconds": int64(30),
			"labels": map[string]any{"a": "b"}, "annotations": map[string]any{"c": "d"},
			"finalizers": []any{"f"}, "ownerReferences": []any{map[string]any{"uid": "o"}}, "generateName": "web-",
		},
		"spec":   map[string]any{"clusterIP": "10.96.0.7", "clusterIPs": []any{"10.96.0.7"}, "ports": []any{map[string]any{"port": int64(80), "nodePort": int64(30080)}}},
		"status": map[string]any{"loadBalancer": map[string]any{}},
	}
	Strip("", "services", obj)
	want := map[string]any{
		"apiVersion": "v1", "kind": "Service",
		"metadata": map[string]any{
			"name": "web", "namespace": "ehr",
			"labels": map[string]any{"a": "b"}, "annotations": map[string]any{"c": "d"},
			"finalizers": []any{"f"}, "ownerReferences": []any{map[string]any{"uid": "o"}}, "generateName": "web-",
		},
		"spec": map[string]any{"ports": []any{map[string]any{"port": int64(80), "nodePort": int64(30080)}}},
	}
	if !reflect.DeepEqual(obj, want) {
		t.Fatalf("Strip:\n got %v\nwant %v", obj, want)
	}

	headless := map[string]any{"spec": map[string]any{"clusterIP": "None", "clusterIPs": []any{"None"}}}
	Strip("", "services", headless)
	if headless["spec"].(map[string]any)["clusterIP"] != "None" {
		t.Fatalf("a headless Service lost clusterIP None: %v", headless)
	}
	// Only core Services have their ClusterIPs reset.
	other := map[string]any{"spec": map[string]any{"clusterIP": "10.0.0.1"}, "status": map[string]any{"x": "y"}}
	Strip("example.com", "services", other)
	if other["spec"].(map[string]any)["clusterIP"] != "10.0.0.1" || other["status"] != nil {
		t.Fatalf("Strip of example.com services: %v", other)
	}
	// An object without metadata or spec does not panic.
	Strip("", "services", map[string]any{"spec": "odd"})
}

func TestMemberPath(t *testing.T) {
	for _, c := range []struct{ group, version, resource, ns, name, want string }{
		{"", "v1", "secrets", "ehr", "db", "core/v1/secrets/ehr/db.yaml"},
		{"apps", "v1", "deployments", "ehr", "web", "apps/v1/deployments/ehr/web.yaml"},
		{"rbac.authorization.k8s.io", "v1", "clusterroles", "", "system:basic-user", "rbac.authorization.k8s.io/v1/clusterroles/_cluster/system:basic-user.yaml"},
		{"", "v1", "namespaces", "", "ehr", "core/v1/namespaces/_cluster/ehr.yaml"},
	} {
		if got := MemberPath(c.group, c.version, c.resource, c.ns, c.name); got != c.want {
			t.Errorf("MemberPath(%q, %q, %q, %q, %q) = %q, want %q", c.group, c.version, c.resource, c.ns, c.name, got, c.want)
		}
	}
}

func TestFilter(t *testing.T) {
	f, err := newFilter(Options{
		ExcludeResources:  []string{"deployments", "feeds.lifeboat-test.dev", " ConfigMaps "},
		IncludeNamespaces: []string{"ehr", "billing", "ehr"},
		ExcludeNamespaces: []string{"billing"},
		LabelSelector:     "app.kubernetes.io/part-of in (ehr),tier!=cache",
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		group, resource string
		want            bool
	}{
		{"", "events", true}, {"events.k8s.io", "events", true}, {"coordination.k8s.io", "leases", true},
		{"", "componentstatuses", true}, {"networking.k8s.io", "ipaddresses", true},
		{"example.com", "events", false}, {"example.com", "leases", false},
		{"apps", "deployments", true}, {"example.com", "deployments", true},
		{"lifeboat-test.dev", "feeds", true}, {"other.dev", "feeds", false},
		{"", "configmaps", true}, {"", "secrets", false}, {"", "services", false},
	} {
		if got := f.excludedResource(c.group, c.resource); got != c.want {
			t.Errorf("excludedResource(%q, %q) = %v, want %v", c.group, c.resource, got, c.want)
		}
	}
	if !reflect.DeepEqual(f.include, []string{"billing", "ehr"}) {
		t.Errorf("include: %v", f.include)
	}
	for ns, want := range map[string]bool{"ehr": true, "billing": false, "scratch": false} {
		if got := f.namespaceAllowed(ns); got != want {
			t.Errorf("namespaceAllowed(%q) = %v, want %v", ns, got, want)
		}
	}
	if f.selector != "app.kubernetes.io/part-of in (ehr),tier!=cache" {
		t.Errorf("selector: %q", f.selector)
	}

	all, err := newFilter(Options{ExcludeNamespaces: []string{"kube-system"}})
	if err != nil || !all.namespaceAllowed("anything") || all.namespaceAllowed("kube-system") || all.selector != "" {
		t.Fatalf("filter without includes: %+v, %v", all, err)
	}
	for _, bad := range []Options{
		{LabelSelector: "a in (b"}, {ExcludeResources: []string{""}}, {ExcludeResources: []string{".apps"}},
		{ExcludeResources: []string{"deployments."}}, {IncludeNamespaces: []string{""}},
	} {
		if _, err := newFilter(bad); err == nil {
			t.Errorf("newFilter(%+v): no error", bad)
		}
	}
}

func TestPodSecurityLabels(t *testing.T) {
	labels, digest := PodSecurityLabels(map[string]string{
		"pod-security.kubernetes.io/warn": "restricted", "team": "ehr",
		"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "v1.34",
	})
	canonical := `{"pod-security.kubernetes.io/enforce":"restricted","pod-security.kubernetes.io/enforce-version":"v1.34","pod-security.kubernetes.io/warn":"restricted"}`
	sum := sha256.Sum256([]byte(canonical))
	if digest != hex.EncodeToString(sum[:]) || len(labels) != 3 || labels["team"] != "" {
		t.Fatalf("PodSecurityLabels: %v %s", labels, digest)
	}
	// No labels, and no Pod Security labels, both digest "{}".
	for _, in := range []map[string]string{nil, {"team": "sre"}} {
		labels, digest := PodSecurityLabels(in)
		if labels != nil || digest != "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a" {
			t.Fatalf("PodSecurityLabels(%v): %v %s", in, labels, digest)
		}
	}
	// HTML characters are not escaped.
	_, digest = PodSecurityLabels(map[string]string{"pod-security.kubernetes.io/audit": "<&>"})
	sum = sha256.Sum256([]byte(`{"pod-security.kubernetes.io/audit":"<&>"}`))
	if digest != hex.EncodeToString(sum[:]) {
		t.Fatal("PodSecurityLabels escapes HTML")
	}
}

func TestIsPolicy(t *testing.T) {
	for _, c := range []struct {
		group, resource string
		want            bool
	}{
		{"rbac.authorization.k8s.io", "clusterroles", true}, {"rbac.authorization.k8s.io", "rolebindings", true},
		{"networking.k8s.io", "networkpolicies", true}, {"admissionregistration.k8s.io", "validatingadmissionpolicybindings", true},
		{"admissionregistration.k8s.io", "mutatingwebhookconfigurations", true}, {"", "resourcequotas", true}, {"", "limitranges", true},
		{"", "secrets", false}, {"", "configmaps", false}, {"", "namespaces", false}, {"example.com", "roles", false},
	} {
		if got := IsPolicy(c.group, c.resource); got != c.want {
			t.Errorf("IsPolicy(%q, %q) = %v, want %v", c.group, c.resource, got, c.want)
		}
	}
}

func TestBuiltinGroup(t *testing.T) {
	for group, want := range map[string]bool{
		"": true, "apps": true, "batch": true, "rbac.authorization.k8s.io": true, "networking.k8s.io": true,
		"admissionregistration.k8s.io": true, "apiextensions.k8s.io": true, "apiregistration.k8s.io": true,
		"metrics.k8s.io": false, "custom.metrics.k8s.io": false, "lifeboat-test.dev": false, "velero.io": false,
	} {
		if got := builtinGroup(group); got != want {
			t.Errorf("builtinGroup(%q) = %v, want %v", group, got, want)
		}
	}
}

// failingDiscovery reports a discovery failure for some group versions.
type failingDiscovery struct {
	discovery.DiscoveryInterface
	failed map[schema.GroupVersion]error
}

func (d failingDiscovery) ServerPreferredResources() ([]*metav1.APIResourceList, error) {
	lists := []*metav1.APIResourceList{{GroupVersion: "v1", APIResources: []metav1.APIResource{
		{Name: "configmaps", Kind: "ConfigMap", Namespaced: true, Verbs: []string{"list"}}}}}
	return lists, &discovery.ErrGroupDiscoveryFailed{Groups: d.failed}
}

// TestDiscoverFailure: a group version of an aggregated API whose
// discovery failed is skipped; one of the API server's own groups fails
// discovery as a whole.
func TestDiscoverFailure(t *testing.T) {
	f, err := newFilter(Options{})
	if err != nil {
		t.Fatal(err)
	}
	unavailable := errors.New("the server is currently unable to handle the request")
	x := &exporter{f: f, log: slog.New(slog.DiscardHandler)}
	res, err := x.discover(failingDiscovery{failed: map[schema.GroupVersion]error{
		{Group: "metrics.k8s.io", Version: "v1beta1"}: unavailable}})
	if err != nil || len(res) != 1 || len(x.skipped) != 1 || x.skipped[0].Resource != "*.metrics.k8s.io/v1beta1" {
		t.Fatalf("aggregated: %v, %v, skipped %v", res, err, x.skipped)
	}
	for _, gv := range []schema.GroupVersion{{Version: "v1"}, {Group: "apps", Version: "v1"}} {
		x := &exporter{f: f, log: slog.New(slog.DiscardHandler)}
		_, err := x.discover(failingDiscovery{failed: map[schema.GroupVersion]error{
			gv: unavailable, {Group: "metrics.k8s.io", Version: "v1beta1"}: unavailable}})
		if !errors.Is(err, unavailable) || !strings.Contains(err.Error(), "built-in group version") {
			t.Errorf("%v: %v", gv, err)
		}
	}
}
