package deploy_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/keys/local"
	"github.com/lifeboat-dr/lifeboat/internal/kube"
	"github.com/lifeboat-dr/lifeboat/internal/service"
	"github.com/lifeboat-dr/lifeboat/internal/store/fs"
	"github.com/lifeboat-dr/lifeboat/internal/testenv"
)

// render runs `kubectl kustomize dir` (the kubectl make testbin builds)
// and returns the objects.
func render(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	out, err := exec.Command(testenv.Binary(t, "kubectl"), "kustomize", dir).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("kubectl kustomize %s: %v\n%s", dir, err, ee.Stderr)
		}
		t.Fatal(err)
	}
	var objs []*unstructured.Unstructured
	d := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(out), 4096)
	for {
		var m map[string]any
		if err := d.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if m != nil {
			objs = append(objs, &unstructured.Unstructured{Object: m})
		}
	}
	return objs
}

// TestDeployBase installs deploy/base into a real kube-apiserver (Pod
// Security admission on, as by default) and proves what a security
// reviewer reads in it: every object applies with server-side apply; the
// Deployment's pod template is admitted in the "restricted" namespace, and
// a copy running as root or mounting a hostPath is refused by Pod
// Security; as the ServiceAccount itself (a token from the TokenRequest
// API) lifeboat may take its Lease, write Events and list every resource,
// and may not write anything else; and `serve`, run with that token,
// takes the Lease in its namespace and completes a scheduled backup of the
// cluster's objects and volumes.
func TestDeployBase(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	objs := render(t, "base")
	kinds := map[string]int{}
	for _, o := range objs {
		kinds[o.GetKind()]++
	}
	t.Logf("deploy/base renders %d objects: %v", len(objs), kinds)
	for _, k := range []string{"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ConfigMap", "Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy"} {
		if kinds[k] == 0 {
			t.Errorf("deploy/base renders no %s", k)
		}
	}

	c := testenv.StartCluster(t)
	cs, err := kubernetes.NewForConfig(c.RESTConfig(c.Token))
	if err != nil {
		t.Fatal(err)
	}
	var deployment *unstructured.Unstructured
	for _, o := range apply(ctx, t, c, objs) {
		if o.GetKind() == "Deployment" {
			deployment = o
		}
	}

	// The pod template, as a Pod in the restricted namespace.
	tmpl, _, err := unstructured.NestedMap(deployment.Object, "spec", "template")
	if err != nil || tmpl == nil {
		t.Fatalf("pod template: %v", err)
	}
	podOf := func(change func(p *corev1.Pod)) *corev1.Pod {
		var p corev1.Pod
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(tmpl, &p); err != nil {
			t.Fatal(err)
		}
		p.Name, p.Namespace = "lifeboat-template", "lifeboat"
		if change != nil {
			change(&p)
		}
		return &p
	}
	dry := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	if _, err := cs.CoreV1().Pods("lifeboat").Create(ctx, podOf(nil), dry); err != nil {
		t.Fatalf("the Deployment's pod template is not admitted in namespace lifeboat: %v", err)
	}
	root := int64(0)
	for name, change := range map[string]func(p *corev1.Pod){
		"runAsUser 0": func(p *corev1.Pod) {
			p.Spec.SecurityContext.RunAsUser, p.Spec.SecurityContext.RunAsNonRoot = &root, nil
		},
		"hostPath": func(p *corev1.Pod) {
			p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "host", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/etc"}}})
		},
	} {
		_, err := cs.CoreV1().Pods("lifeboat").Create(ctx, podOf(change), dry)
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "violates PodSecurity") {
			t.Errorf("a pod with %s: %v, want refused by Pod Security", name, err)
		}
	}

	// As the ServiceAccount.
	tr, err := cs.CoreV1().ServiceAccounts("lifeboat").CreateToken(ctx, "lifeboat", &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: ptr(int64(600))}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest: %v", err)
	}
	sa, err := kubernetes.NewForConfig(c.RESTConfig(tr.Status.Token))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []struct {
		ns, verb, group, resource string
		allowed                   bool
	}{
		{"lifeboat", "create", "coordination.k8s.io", "leases", true},
		{"lifeboat", "update", "coordination.k8s.io", "leases", true},
		{"lifeboat", "create", "", "events", true},
		{"", "list", "", "secrets", true},
		{"", "list", "apps", "deployments", true},
		{"ehr", "create", "snapshot.storage.k8s.io", "volumesnapshots", true},
		{"kube-system", "create", "coordination.k8s.io", "leases", false},
		{"lifeboat", "delete", "coordination.k8s.io", "leases", false},
		{"lifeboat", "create", "", "configmaps", false},
		{"lifeboat", "update", "", "configmaps", false},
		{"ehr", "delete", "", "secrets", false},
		{"ehr", "create", "", "pods", false},
		{"", "create", "rbac.authorization.k8s.io", "clusterrolebindings", false},
		{"ehr", "update", "apps", "deployments", false},
		{"ehr", "get", "", "pods/log", false},
		{"", "get", "", "nodes/proxy", false},
	} {
		ssar := &authzv1.SelfSubjectAccessReview{Spec: authzv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authzv1.ResourceAttributes{
			Namespace: a.ns, Verb: a.verb, Group: a.group, Resource: strings.Split(a.resource, "/")[0], Subresource: subresource(a.resource)}}}
		got, err := sa.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, ssar, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got.Status.Allowed != a.allowed {
			t.Errorf("%s %s %s in %q: allowed %v, want %v", a.verb, a.group, a.resource, a.ns, got.Status.Allowed, a.allowed)
		}
	}
	// serve, as the ServiceAccount: it takes the Lease in its namespace and
	// runs a scheduled backup of the cluster's objects and volumes.
	testenv.InstallSnapshotCRDs(t, c)
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "sa.kubeconfig")
	if err := c.WriteKubeconfig(kubeconfig, "system:serviceaccount:lifeboat:lifeboat", tr.Status.Token); err != nil {
		t.Fatal(err)
	}
	storeRoot, keyring := filepath.Join(dir, "store"), filepath.Join(dir, "keyring.json")
	if _, err := local.Create(ctx, local.Options{Path: keyring}, "deploy-kek"); err != nil {
		t.Fatal(err)
	}
	confDir := filepath.Join(dir, "config")
	if err := os.MkdirAll(confDir, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`apiVersion: lifeboat.dev/v1alpha1
kind: Store
metadata: {name: local}
spec: {type: fs, path: %q, objectLock: {mode: COMPLIANCE, retention: 1d}}
---
apiVersion: lifeboat.dev/v1alpha1
kind: KeyProvider
metadata: {name: local}
spec: {type: local, keyring: %q}
---
apiVersion: lifeboat.dev/v1alpha1
kind: BackupPlan
metadata: {name: cluster}
spec:
  store: local
  keyProvider: local
  retention: 1d
  cluster: {kubeconfig: %q}
  sources:
    - manifests: {}
    - volumes: {timeout: 1m}
---
apiVersion: lifeboat.dev/v1alpha1
kind: Schedule
metadata: {name: often}
spec: {cron: "@every 2s", backupPlan: cluster}
`, storeRoot, keyring, kubeconfig)
	if err := os.WriteFile(filepath.Join(confDir, "lifeboat.yaml"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	signer, err := evidence.LoadOrCreateSigner(filepath.Join(dir, "signing.pem"))
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- service.Run(sctx, service.Options{ConfigDir: confDir, Listen: "127.0.0.1:0", Identity: "lifeboat-0", LeaderElect: true,
			LeaseNamespace: "lifeboat", LeaseName: "lifeboat", Kube: kube.Options{Kubeconfig: kubeconfig}, Signer: signer, Version: "test"})
	}()
	st, err := fs.Open(ctx, fs.Options{Root: storeRoot})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		lease, lerr := cs.CoordinationV1().Leases("lifeboat").Get(ctx, "lifeboat", metav1.GetOptions{})
		ms, _ := catalog.List(ctx, st, catalog.ListOptions{Plan: "cluster"})
		if lerr == nil && lease.Spec.HolderIdentity != nil && *lease.Spec.HolderIdentity == "lifeboat-0" && len(ms) > 0 {
			if ms[0].Status != catalog.StatusComplete || ms[0].Manifests == nil || ms[0].Volumes == nil {
				t.Fatalf("the service's backup as the ServiceAccount: status %s, manifests %v, volumes %v", ms[0].Status, ms[0].Manifests != nil, ms[0].Volumes != nil)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no Lease held and no complete backup within 90 s (lease %v)", lerr)
		}
		select {
		case err := <-done:
			t.Fatalf("serve stopped: %v", err)
		case <-time.After(200 * time.Millisecond):
		}
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
	if _, err := sa.CoreV1().ConfigMaps("lifeboat").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("creating a ConfigMap as the ServiceAccount: %v, want forbidden", err)
	}

}

// apply applies objs to c with server-side apply and returns them.
func apply(ctx context.Context, t *testing.T, c *testenv.Cluster, objs []*unstructured.Unstructured) []*unstructured.Unstructured {
	t.Helper()
	cfg := c.RESTConfig(c.Token)
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(cs.Discovery()))
	force := true
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Fatalf("%s: %v", gvk, err)
		}
		var ri dynamic.ResourceInterface = dc.Resource(m.Resource)
		if o.GetNamespace() != "" {
			ri = dc.Resource(m.Resource).Namespace(o.GetNamespace())
		}
		body, err := o.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ri.Patch(ctx, o.GetName(), types.ApplyPatchType, body, metav1.PatchOptions{FieldManager: "deploy-test", Force: &force}); err != nil {
			t.Fatalf("server-side apply %s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}
	return objs
}

// TestMonitoring renders deploy/overlays/monitoring (the base with the
// monitoring component) and applies it to a real kube-apiserver with the
// Prometheus Operator's CRDs, which validate the ServiceMonitor and the
// PrometheusRule; then `promtool check rules` and `promtool test rules`
// run the PrometheusRule's groups against series shaped like the
// service's metrics (components/monitoring/rules_test.yaml): every alert
// fires when it should and stays quiet when it should not.
func TestMonitoring(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// The AWS overlay renders too: IRSA on the ServiceAccount.
	for _, o := range render(t, "overlays/aws") {
		if o.GetKind() == "ServiceAccount" && o.GetAnnotations()["eks.amazonaws.com/role-arn"] == "" {
			t.Error("overlays/aws: the ServiceAccount has no IRSA role annotation")
		}
	}
	objs := render(t, "overlays/monitoring")
	c := testenv.StartCluster(t)
	testenv.InstallMonitoringCRDs(t, c)
	var rule *unstructured.Unstructured
	for _, o := range apply(ctx, t, c, objs) {
		if o.GetKind() == "PrometheusRule" {
			rule = o
		}
	}
	if rule == nil {
		t.Fatal("no PrometheusRule rendered")
	}
	spec, _, _ := unstructured.NestedMap(rule.Object, "spec")
	rules, err := yaml.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), rules, 0o600); err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile("components/monitoring/rules_test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "rules_test.yaml"), tests, 0o600); err != nil {
		t.Fatal(err)
	}
	promtool := testenv.Binary(t, "promtool")
	for _, args := range [][]string{{"check", "rules", "rules.yaml"}, {"test", "rules", "rules_test.yaml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
		if err != nil {
			t.Fatalf("promtool %s: %v", strings.Join(args, " "), err)
		}
	}
	// Every alert of the rule is exercised by the unit tests.
	var names []string
	groups, _, _ := unstructured.NestedSlice(spec, "groups")
	for _, g := range groups {
		rs, _, _ := unstructured.NestedSlice(g.(map[string]any), "rules")
		for _, r := range rs {
			if a, ok := r.(map[string]any)["alert"].(string); ok {
				names = append(names, a)
				if !strings.Contains(string(tests), "alertname: "+a+"\n") {
					t.Errorf("alert %s has no promtool test", a)
				}
			}
		}
	}
	t.Logf("alerts: %v", names)
}

func subresource(r string) string {
	if _, sub, ok := strings.Cut(r, "/"); ok {
		return sub
	}
	return ""
}

func ptr[T any](v T) *T { return &v }

// TestDeployAudit installs deploy/overlays/audit (the base with the API
// audit log receiver) into a real kube-apiserver: every object applies;
// the StatefulSet's pod template, with its write-ahead log volume, is
// admitted by Pod Security "restricted"; its ServiceAccount gets no token;
// and the configuration in its ConfigMap loads, with its AuditLog.
func TestDeployAudit(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	objs := render(t, "overlays/audit")
	c := testenv.StartCluster(t)
	cs, err := kubernetes.NewForConfig(c.RESTConfig(c.Token))
	if err != nil {
		t.Fatal(err)
	}
	var sts, cm *unstructured.Unstructured
	for _, o := range apply(ctx, t, c, objs) {
		switch {
		case o.GetKind() == "StatefulSet" && o.GetName() == "lifeboat-audit":
			sts = o
		case o.GetKind() == "ConfigMap" && strings.HasPrefix(o.GetName(), "lifeboat-audit-config-"):
			cm = o
		}
	}
	if sts == nil || cm == nil {
		t.Fatalf("deploy/overlays/audit renders no lifeboat-audit StatefulSet or ConfigMap")
	}
	tmpl, _, err := unstructured.NestedMap(sts.Object, "spec", "template")
	if err != nil || tmpl == nil {
		t.Fatalf("pod template: %v", err)
	}
	var p corev1.Pod
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(tmpl, &p); err != nil {
		t.Fatal(err)
	}
	p.Name, p.Namespace = "lifeboat-audit-0", "lifeboat"
	// The StatefulSet controller adds the claim's volume to each pod.
	p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "wal", VolumeSource: corev1.VolumeSource{
		PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "wal-lifeboat-audit-0"}}})
	if _, err := cs.CoreV1().Pods("lifeboat").Create(ctx, &p, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
		t.Fatalf("the audit StatefulSet's pod template is not admitted in namespace lifeboat: %v", err)
	}
	if p.Spec.AutomountServiceAccountToken == nil || *p.Spec.AutomountServiceAccountToken {
		t.Error("the audit receiver's pods mount a ServiceAccount token; they need none")
	}
	data, _, _ := unstructured.NestedStringMap(cm.Object, "data")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "audit.yaml"), []byte(data["audit.yaml"]), 0o600); err != nil {
		t.Fatal(err)
	}
	set, err := config.LoadPaths(dir)
	if err != nil {
		t.Fatalf("the audit ConfigMap's configuration does not load: %v", err)
	}
	if len(set.AuditLogs) != 1 || set.AuditLogs[0].Spec.WALDir != "/var/lib/lifeboat/audit" {
		t.Fatalf("the audit configuration's AuditLog: %+v", set.AuditLogs)
	}
	mounted := false
	for _, m := range p.Spec.Containers[0].VolumeMounts {
		mounted = mounted || m.Name == "wal" && m.MountPath == set.AuditLogs[0].Spec.WALDir
	}
	if !mounted {
		t.Error("the WAL volume is not mounted at the AuditLog's walDir")
	}
}
