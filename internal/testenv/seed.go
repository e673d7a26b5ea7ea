package testenv

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// RESTConfig returns a client-go config for Server with token (Token for
// the admin, RestrictedToken for the restricted user), with client-side
// rate limits high enough for seeding.
func (c *Cluster) RESTConfig(token string) *rest.Config {
	return &rest.Config{
		Host:            c.Server,
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAFile: c.CAFile},
		QPS:             1000,
		Burst:           2000,
		UserAgent:       "lifeboat-testenv",
	}
}

// Seed is what SeedCluster created.
type Seed struct {
	// Namespaces are the namespaces created: "ehr" (Pod Security
	// restricted, part-of=ehr), "billing" (baseline, part-of=billing) and
	// "scratch" (no Pod Security labels, no part-of label).
	Namespaces []string
	// PHICanary is the value stored in the Secret ehr/db (key "password");
	// it must never appear outside an encrypted artifact.
	PHICanary string
	// CRD is the custom resource's resource: feeds.lifeboat-test.dev/v1,
	// namespaced, kind Feed; one Feed each in ehr and billing.
	CRD schema.GroupVersionResource
}

// Seed label and group names.
const (
	// SeedPartOf is the label every seeded namespaced object carries, with
	// its namespace's name as value (except in "scratch").
	SeedPartOf = "app.kubernetes.io/part-of"
	// SeedCRDGroup is the seeded CRD's group.
	SeedCRDGroup = "lifeboat-test.dev"
)

// SeedCluster fills a cluster with a realistic mix of objects, using cfg
// (an admin config): three namespaces with and without Pod Security
// labels; in each of ehr and billing a Deployment, a ClusterIP Service, a
// ConfigMap, a Secret, a Role and RoleBinding, a NetworkPolicy, a
// ResourceQuota, a LimitRange, an Event, a Lease and a Feed custom
// resource; a headless Service in ehr; in scratch a ConfigMap; and
// cluster-wide a ClusterRole and binding, a ValidatingAdmissionPolicy and
// binding (matching nothing seeded), a ValidatingWebhookConfiguration
// (failurePolicy Ignore, for cronjobs only) and the Feed CRD.
func SeedCluster(t testing.TB, cfg *rest.Config) *Seed {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("testenv: seed: %v", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("testenv: seed: %v", err)
	}
	s := &Seed{
		Namespaces: []string{"billing", "ehr", "scratch"},
		PHICanary:  "PHI-canary-" + randomSecret(t)[:12],
		CRD:        schema.GroupVersionResource{Group: SeedCRDGroup, Version: "v1", Resource: "feeds"},
	}
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("testenv: seed: %s: %v", what, err)
		}
	}
	create := metav1.CreateOptions{}
	psa := map[string]map[string]string{
		"ehr": {
			"pod-security.kubernetes.io/enforce":         "restricted",
			"pod-security.kubernetes.io/enforce-version": "latest",
			"pod-security.kubernetes.io/warn":            "restricted",
			SeedPartOf:                                   "ehr",
		},
		"billing": {"pod-security.kubernetes.io/enforce": "baseline", SeedPartOf: "billing"},
		"scratch": {"team": "sre"},
	}
	for _, ns := range s.Namespaces {
		_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: psa[ns]}}, create)
		must("namespace "+ns, err)
	}

	// The CRD first, so it is established by the time its objects are
	// created.
	crds := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	crd := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
		"metadata": map[string]any{"name": "feeds." + SeedCRDGroup},
		"spec": map[string]any{
			"group": SeedCRDGroup, "scope": "Namespaced",
			"names": map[string]any{"plural": "feeds", "singular": "feed", "kind": "Feed", "listKind": "FeedList"},
			"versions": []any{map[string]any{
				"name": "v1", "served": true, "storage": true,
				"subresources": map[string]any{"status": map[string]any{}},
				"schema": map[string]any{"openAPIV3Schema": map[string]any{
					"type": "object", "x-kubernetes-preserve-unknown-fields": true,
				}},
			}},
		},
	}}
	_, err = dyn.Resource(crds).Create(ctx, crd, create)
	must("crd", err)

	_, err = cs.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "lifeboat-seed-auditor"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list"}}},
	}, create)
	must("clusterrole", err)
	_, err = cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "lifeboat-seed-auditor"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "lifeboat-seed-auditor"},
		Subjects:   []rbacv1.Subject{{Kind: "Group", APIGroup: "rbac.authorization.k8s.io", Name: "auditors"}},
	}, create)
	must("clusterrolebinding", err)
	fail := admissionregistrationv1.Fail
	_, err = cs.AdmissionregistrationV1().ValidatingAdmissionPolicies().Create(ctx, &admissionregistrationv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "require-team-label"},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: &fail,
			MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
					Rule:       admissionregistrationv1.Rule{APIGroups: []string{"apps"}, APIVersions: []string{"v1"}, Resources: []string{"deployments"}},
				},
			}}},
			Validations: []admissionregistrationv1.Validation{{Expression: "has(object.metadata.labels) && 'team' in object.metadata.labels"}},
		},
	}, create)
	must("validatingadmissionpolicy", err)
	_, err = cs.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Create(ctx, &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "require-team-label"},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        "require-team-label",
			ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
			// No seeded namespace has this label: the policy is stored,
			// not enforced.
			MatchResources: &admissionregistrationv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{
				MatchLabels: map[string]string{"lifeboat-test/enforce-team": "true"}}},
		},
	}, create)
	must("validatingadmissionpolicybinding", err)
	ignore, none := admissionregistrationv1.Ignore, admissionregistrationv1.SideEffectClassNone
	url := "https://127.0.0.1:1/validate"
	timeout := int32(1)
	_, err = cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "cronjob-guard"},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name:                    "cronjobs.lifeboat-test.dev",
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: &url},
			FailurePolicy:           &ignore,
			SideEffects:             &none,
			TimeoutSeconds:          &timeout,
			AdmissionReviewVersions: []string{"v1"},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{"batch"}, APIVersions: []string{"v1"}, Resources: []string{"cronjobs"}},
			}},
		}},
	}, create)
	must("validatingwebhookconfiguration", err)

	_, err = cs.CoreV1().ConfigMaps("scratch").Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "notes"}, Data: map[string]string{"a": "b"}}, create)
	must("configmap scratch/notes", err)

	for _, ns := range []string{"ehr", "billing"} {
		lbl := map[string]string{SeedPartOf: ns, "app": "web"}
		om := func(name string) metav1.ObjectMeta {
			return metav1.ObjectMeta{Name: name, Namespace: ns, Labels: lbl}
		}
		replicas := int32(2)
		_, err = cs.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
			ObjectMeta: om("web"),
			Spec: appsv1.DeploymentSpec{
				Replicas: &replicas,
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
					Spec: corev1.PodSpec{
						SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: ptr(true), SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
						Containers: []corev1.Container{{
							Name: "web", Image: "registry.example/ehr/web:1.4.2",
							Ports: []corev1.ContainerPort{{ContainerPort: 8080}},
							SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: ptr(false),
								Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}},
							EnvFrom: []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "db"}}}},
						}},
					},
				},
			},
		}, create)
		must("deployment "+ns+"/web", err)
		_, err = cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{
			ObjectMeta: om("web"),
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"},
				Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}}},
		}, create)
		must("service "+ns+"/web", err)
		_, err = cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: om("settings"),
			Data: map[string]string{"LOG_LEVEL": "info", "FEATURE_X": "on"}}, create)
		must("configmap "+ns+"/settings", err)
		_, err = cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: om("db"),
			StringData: map[string]string{"password": s.PHICanary, "user": ns}}, create)
		must("secret "+ns+"/db", err)
		_, err = cs.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: om("reader"),
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list"}}}}, create)
		must("role "+ns+"/reader", err)
		_, err = cs.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: om("reader"),
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "reader"},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "web", Namespace: ns}}}, create)
		must("rolebinding "+ns+"/reader", err)
		_, err = cs.NetworkingV1().NetworkPolicies(ns).Create(ctx, &networkingv1.NetworkPolicy{ObjectMeta: om("default-deny"),
			Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}}}, create)
		must("networkpolicy "+ns+"/default-deny", err)
		_, err = cs.CoreV1().ResourceQuotas(ns).Create(ctx, &corev1.ResourceQuota{ObjectMeta: om("compute"),
			Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("50")}}}, create)
		must("resourcequota "+ns+"/compute", err)
		_, err = cs.CoreV1().LimitRanges(ns).Create(ctx, &corev1.LimitRange{ObjectMeta: om("defaults"),
			Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{Type: corev1.LimitTypeContainer,
				Default: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")}}}}}, create)
		must("limitrange "+ns+"/defaults", err)
		_, err = cs.CoreV1().Events(ns).Create(ctx, &corev1.Event{ObjectMeta: om("web.1"),
			InvolvedObject: corev1.ObjectReference{Kind: "Deployment", Namespace: ns, Name: "web"},
			Reason:         "Seeded", Message: "seeded by testenv", Type: corev1.EventTypeNormal}, create)
		must("event "+ns+"/web.1", err)
		_, err = cs.CoordinationV1().Leases(ns).Create(ctx, &coordinationv1.Lease{ObjectMeta: om("leader"),
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr("web-0")}}, create)
		must("lease "+ns+"/leader", err)
	}
	_, err = cs.CoreV1().Services("ehr").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "db-headless", Namespace: "ehr", Labels: map[string]string{SeedPartOf: "ehr"}},
		Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Selector: map[string]string{"app": "db"},
			Ports: []corev1.ServicePort{{Name: "pg", Port: 5432}}},
	}, create)
	must("service ehr/db-headless", err)

	// Custom resources, once the CRD is established.
	for _, ns := range []string{"ehr", "billing"} {
		cr := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": SeedCRDGroup + "/v1", "kind": "Feed",
			"metadata": map[string]any{"name": "hl7-inbound", "namespace": ns, "labels": map[string]any{SeedPartOf: ns}},
			"spec":     map[string]any{"protocol": "HL7v2", "port": int64(2575)},
		}}
		deadline := time.Now().Add(30 * time.Second)
		for {
			_, err = dyn.Resource(s.CRD).Namespace(ns).Create(ctx, cr, create)
			if err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		must("feed "+ns+"/hl7-inbound", err)
	}
	return s
}

// SeedConfigMaps creates n ConfigMaps of about size bytes of data each,
// spread over namespaces "bulk-0" ... "bulk-<spread-1>" (created here),
// with workers concurrent requests.
func SeedConfigMaps(t testing.TB, cfg *rest.Config, n, spread, size, workers int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("testenv: seed: %v", err)
	}
	for i := range spread {
		ns := "bulk-" + strconv.Itoa(i)
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatalf("testenv: seed: namespace %s: %v", ns, err)
		}
	}
	value := strings.Repeat("x", size)
	jobs := make(chan int)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range jobs {
				ns := "bulk-" + strconv.Itoa(i%spread)
				_, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
					ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%06d", i), Labels: map[string]string{"bulk": "true"}},
					Data:       map[string]string{"value": value},
				}, metav1.CreateOptions{})
				if err != nil {
					select {
					case errs <- fmt.Errorf("configmap %s/cm-%06d: %w", ns, i, err):
					default:
					}
					cancel()
					return
				}
			}
		})
	}
send:
	for i := range n {
		select {
		case jobs <- i:
		case <-ctx.Done():
			break send
		}
	}
	close(jobs)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatalf("testenv: seed: %v", err)
	default:
	}
}

func ptr[T any](v T) *T { return &v }
