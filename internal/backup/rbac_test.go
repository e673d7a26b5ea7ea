package backup_test

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/lifeboat-dr/lifeboat/internal/backup"
	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/testenv"
)

// TestDeployRBACSuffices binds deploy/base/rbac.yaml's ClusterRole, and nothing
// else, to a user and backs up with every Kubernetes source as that user:
// the backup must be complete, with nothing skipped. The user must still be
// refused a write the role does not grant, so the role is not cluster-admin
// in disguise.
func TestDeployRBACSuffices(t *testing.T) {
	ctx := testContext(t)
	c := testenv.StartCluster(t)
	testenv.InstallSnapshotCRDs(t, c)
	testenv.InstallVeleroCRDs(t, c)
	startSnapshotController(t, c)
	startVeleroServer(t, c)
	admin, err := kubernetes.NewForConfig(adminConfig(c))
	if err != nil {
		t.Fatal(err)
	}
	k := newKubeObjects(t, c)
	k.namespace("velero")
	k.namespace("ehr")
	k.claim("ehr", "db", "1Gi", snapReady, nil)
	encCfg, err := os.ReadFile(c.EncryptionConfig)
	if err != nil {
		t.Fatal(err)
	}
	putSecret(t, admin, "kube-system", "encryption-config", "config.yaml", encCfg)

	// The ClusterRole exactly as shipped, bound to the test's user.
	raw, err := os.ReadFile("../../deploy/base/rbac.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var role *rbacv1.ClusterRole
	for doc := range strings.SplitSeq(string(raw), "\n---\n") {
		var meta metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatalf("deploy/base/rbac.yaml: %v", err)
		}
		if meta.Kind == "ClusterRole" {
			role = &rbacv1.ClusterRole{}
			if err := yaml.UnmarshalStrict([]byte(doc), role); err != nil {
				t.Fatalf("deploy/base/rbac.yaml ClusterRole: %v", err)
			}
		}
	}
	if role == nil {
		t.Fatal("deploy/base/rbac.yaml has no ClusterRole")
	}
	if _, err := admin.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "lifeboat-backup-test"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: testenv.RestrictedUser}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	restricted, err := kubernetes.NewForConfig(c.RESTConfig(c.RestrictedToken))
	if err != nil {
		t.Fatal(err)
	}
	// The authorizer's cache sees the binding shortly after it is made.
	for deadline := time.Now().Add(30 * time.Second); ; {
		r, err := restricted.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authzv1.SelfSubjectAccessReview{
			Spec: authzv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authzv1.ResourceAttributes{
				Group: "snapshot.storage.k8s.io", Resource: "volumesnapshots", Verb: "create", Namespace: "ehr"}}}, metav1.CreateOptions{})
		if err == nil && r.Status.Allowed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the binding never took effect: %v %+v", err, r)
		}
		time.Sleep(100 * time.Millisecond)
	}

	f := newFixture(t)
	var logs logBuffer
	p := plan("rbac",
		config.Source{Manifests: &config.ManifestsSource{}},
		config.Source{EncryptionConfig: &config.EncryptionConfigSource{SecretRef: &config.SecretKeyRef{Namespace: "kube-system", Name: "encryption-config", Key: "config.yaml"}}},
		config.Source{Volumes: &config.VolumesSource{Namespaces: []string{"ehr"}, Timeout: config.Duration(time.Minute)}},
		config.Source{Velero: &config.VeleroSource{IncludeNamespaces: []string{"ehr"}, Timeout: config.Duration(time.Minute)}},
	)
	p.Spec.Cluster = &config.ClusterRef{Kubeconfig: c.RestrictedKubeconfig}
	m, err := runBackup(ctx, t, f, p, &logs, nil)
	if err != nil {
		t.Fatalf("backup as the deploy/base/rbac.yaml user: %v\nlogs:\n%s", err, logs.String())
	}
	if m.Status != catalog.StatusComplete || len(m.Skipped) != 0 || m.Manifests == nil || len(m.Manifests.Skipped) != 0 {
		t.Fatalf("status %s, skipped %+v, manifests %+v", m.Status, m.Skipped, m.Manifests)
	}
	if m.EncryptionConfig == nil || m.Volumes == nil || len(m.Volumes.Snapshots) != 1 || m.Velero == nil || m.Velero.Phase != "Completed" {
		t.Fatalf("sections: encryption config %+v, volumes %+v, velero %+v", m.EncryptionConfig, m.Volumes, m.Velero)
	}

	// A failed backup cleans up as this user too: its Velero Backup gets a
	// DeleteBackupRequest, its snapshots are deleted.
	k.namespace("broken")
	k.claim("broken", "db", "1Gi", snapError, nil)
	p = plan("rbac-fail",
		config.Source{Velero: &config.VeleroSource{IncludeNamespaces: []string{"broken"}, Timeout: config.Duration(time.Minute)}},
		config.Source{Volumes: &config.VolumesSource{Namespaces: []string{"broken"}, Timeout: config.Duration(time.Minute)}})
	p.Spec.Cluster = &config.ClusterRef{Kubeconfig: c.RestrictedKubeconfig}
	var flogs logBuffer
	_, err = runBackup(ctx, t, f, p, &flogs, nil)
	var rerr *backup.RunError
	if !errors.As(err, &rerr) || rerr.Step != config.SourceVolumes {
		t.Fatalf("failing backup as the deploy/base/rbac.yaml user: %v", err)
	}
	if reqs := deleteRequests(t, c, "velero", rerr.Backup); len(reqs) != 1 {
		t.Errorf("DeleteBackupRequests for the failed backup's Velero Backup: %d, want 1\nlogs:\n%s", len(reqs), flogs.String())
	}
	if left := k.snapshots("broken"); len(left) != 0 {
		t.Errorf("snapshots left by the failed backup: %v", left)
	}

	// No get on subresources: a "*" rule with get would reach the kubelet
	// (nodes/proxy), application logs (pods/log) and in-cluster services.
	for _, a := range []authzv1.ResourceAttributes{
		{Resource: "nodes", Subresource: "proxy", Verb: "get", Name: "n1"},
		{Resource: "pods", Subresource: "log", Verb: "get", Namespace: "ehr", Name: "p"},
		{Resource: "pods", Subresource: "exec", Verb: "get", Namespace: "ehr", Name: "p"},
		{Resource: "pods", Subresource: "exec", Verb: "create", Namespace: "ehr", Name: "p"},
		{Resource: "services", Subresource: "proxy", Verb: "get", Namespace: "ehr", Name: "s"},
		{Resource: "pods", Subresource: "portforward", Verb: "get", Namespace: "ehr", Name: "p"},
		{Resource: "configmaps", Verb: "update", Namespace: "ehr", Name: "c"},
	} {
		r, err := restricted.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authzv1.SelfSubjectAccessReview{
			Spec: authzv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &a}}, metav1.CreateOptions{})
		if err != nil || r.Status.Allowed {
			t.Errorf("%s %s/%s allowed to the deploy/base/rbac.yaml user (err %v)", a.Verb, a.Resource, a.Subresource, err)
		}
	}

	// Reads and the writes above only.
	_, err = restricted.CoreV1().ConfigMaps("ehr").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) {
		t.Errorf("creating a ConfigMap as the deploy/base/rbac.yaml user: %v, want forbidden", err)
	}
	err = restricted.CoreV1().Secrets("kube-system").Delete(ctx, "encryption-config", metav1.DeleteOptions{})
	if !apierrors.IsForbidden(err) {
		t.Errorf("deleting a Secret as the deploy/base/rbac.yaml user: %v, want forbidden", err)
	}
}
