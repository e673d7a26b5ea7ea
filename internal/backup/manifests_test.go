package backup_test

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/lifeboat-dr/lifeboat/internal/backup"
	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/source/manifests"
	"github.com/lifeboat-dr/lifeboat/internal/store"
	"github.com/lifeboat-dr/lifeboat/internal/testenv"
)

// untar reads a tar into its members, in order.
func untar(t *testing.T, b []byte) ([]string, map[string][]byte) {
	t.Helper()
	var order []string
	members := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return order, members
		}
		if err != nil {
			t.Fatalf("tar: %v", err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		order = append(order, h.Name)
		members[h.Name] = data
	}
}

// decrypt returns the plaintext of one artifact of m.
func decrypt(t *testing.T, f fixture, m catalog.Manifest, name string) []byte {
	t.Helper()
	ctx := testContext(t)
	dk, _, err := catalog.OpenKey(ctx, f.st, m.Backup, m.DataKeyID, f.keyring)
	if err != nil {
		t.Fatal(err)
	}
	defer dk.Destroy()
	var buf bytes.Buffer
	if _, err := catalog.DecryptArtifact(ctx, f.st, m, name, dk, &buf); err != nil {
		t.Fatalf("decrypt %s: %v", name, err)
	}
	return buf.Bytes()
}

// putSecret stores a Secret with one key.
func putSecret(t *testing.T, cs kubernetes.Interface, ns, name, key string, value []byte) {
	t.Helper()
	_, err := cs.CoreV1().Secrets(ns).Create(testContext(t), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Data: map[string][]byte{key: value}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

// TestRunManifests backs up a seeded cluster's objects and its
// EncryptionConfiguration from a Secret, then decrypts both artifacts and
// checks them against the manifest.
func TestRunManifests(t *testing.T) {
	ctx := testContext(t)
	c := testenv.StartCluster(t)
	cfg := c.RESTConfig(c.Token)
	seed := testenv.SeedCluster(t, cfg)
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	encCfg, err := os.ReadFile(c.EncryptionConfig)
	if err != nil {
		t.Fatal(err)
	}
	putSecret(t, cs, "kube-system", "encryption-config", "config.yaml", encCfg)

	f := newFixture(t)
	var logs bytes.Buffer
	p := plan("cluster",
		config.Source{Manifests: &config.ManifestsSource{ExcludeNamespaces: []string{"scratch"}}},
		config.Source{EncryptionConfig: &config.EncryptionConfigSource{SecretRef: &config.SecretKeyRef{
			Namespace: "kube-system", Name: "encryption-config", Key: "config.yaml"}}},
	)
	p.Spec.Cluster = &config.ClusterRef{Kubeconfig: c.Kubeconfig}
	m, err := backup.Run(ctx, backup.Options{Plan: p, Store: f.st, Keys: f.keyring, Version: "test",
		Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, logs.String())
	}
	if m.Status != catalog.StatusComplete || len(m.Skipped) != 0 || len(m.Artifacts) != 2 || m.Manifests == nil {
		t.Fatalf("manifest: %+v", m)
	}
	if a, ok := m.Artifact(catalog.ArtifactManifests); !ok || a.Source != catalog.SourceManifests {
		t.Fatalf("artifacts: %+v", m.Artifacts)
	}
	if ec := m.EncryptionConfig; ec == nil || strings.Join(ec.Providers, ",") != "aescbc,identity" || strings.Join(ec.KeyNames, ",") != "key1" || strings.Join(ec.Resources, ",") != "secrets" {
		t.Fatalf("encryption config: %+v", m.EncryptionConfig)
	}
	res, err := catalog.Verify(ctx, f.st, m.Backup, true, f.keyring)
	if err != nil || !res.OK {
		t.Fatalf("Verify: %+v, %v", res, err)
	}
	stored, err := catalog.Read(ctx, f.st, m.Backup)
	if err != nil || stored.Manifests == nil || stored.Manifests.IndexSHA256 != m.Manifests.IndexSHA256 || len(stored.Manifests.Policies) != len(m.Manifests.Policies) {
		t.Fatalf("Read: %v", err)
	}

	// The artifact: index digest, per-object digests, counts.
	order, members := untar(t, decrypt(t, f, m, catalog.ArtifactManifests))
	idxBytes := members[manifests.IndexMember]
	if sum := sha256.Sum256(idxBytes); order[len(order)-1] != manifests.IndexMember || hex.EncodeToString(sum[:]) != m.Manifests.IndexSHA256 {
		t.Fatal("the index is not last, or its digest is not the manifest's indexSHA256")
	}
	var idx manifests.Index
	if err := json.Unmarshal(idxBytes, &idx); err != nil {
		t.Fatal(err)
	}
	if idx.Total != m.Manifests.Objects || len(order) != idx.Total+1 || !slices.Equal(idx.Counts, m.Manifests.Counts) {
		t.Fatalf("index: %d objects, tar %d members, manifest %d objects", idx.Total, len(order), m.Manifests.Objects)
	}
	for _, e := range idx.Objects {
		if sum := sha256.Sum256(members[e.Path]); hex.EncodeToString(sum[:]) != e.SHA256 {
			t.Fatalf("%s: digest mismatch", e.Path)
		}
		if e.Namespace == "scratch" || (e.Kind == "Namespace" && e.Name == "scratch") {
			t.Fatalf("excluded namespace exported: %s", e.Path)
		}
	}
	secretDoc := string(members["core/v1/secrets/ehr/db.yaml"])
	if !strings.Contains(secretDoc, base64.StdEncoding.EncodeToString([]byte(seed.PHICanary))) || strings.Contains(secretDoc, "resourceVersion") {
		t.Fatalf("secret document: data missing or not stripped")
	}
	if _, ok := members["lifeboat-test.dev/v1/feeds/ehr/hl7-inbound.yaml"]; !ok {
		t.Fatal("custom resource missing")
	}
	// The encryption config artifact is the Secret's bytes.
	if got := decrypt(t, f, m, catalog.ArtifactEncryptionConfig); !bytes.Equal(got, encCfg) {
		t.Fatal("encryption config artifact differs from the Secret")
	}

	// Neither the logs nor the stored manifest hold a secret, an object's
	// content or a non-policy object's name.
	mj, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	_, key, _ := strings.Cut(string(encCfg), "secret: ")
	key, _, _ = strings.Cut(key, "\n")
	for _, leak := range []string{seed.PHICanary, base64.StdEncoding.EncodeToString([]byte(seed.PHICanary)), key, "hl7-inbound", "settings", "HL7v2"} {
		if strings.Contains(logs.String(), leak) || bytes.Contains(mj, []byte(leak)) {
			t.Errorf("logs or manifest hold %q", leak)
		}
	}
	if !bytes.Contains(mj, []byte(`"lifeboat-seed-auditor"`)) || !bytes.Contains(mj, []byte(`"pod-security.kubernetes.io/enforce": "restricted"`)) {
		t.Errorf("manifest lacks the policy objects:\n%s", mj)
	}
}

// grantAllButSecrets binds user a ClusterRole that may list every
// resource the server has, except Secrets (RBAC cannot deny, so the core
// group's resources are named one by one).
func grantAllButSecrets(t *testing.T, cs kubernetes.Interface, user string) {
	t.Helper()
	ctx := testContext(t)
	core, err := cs.Discovery().ServerResourcesForGroupVersion("v1")
	if err != nil {
		t.Fatal(err)
	}
	var coreRes []string
	for _, r := range core.APIResources {
		if r.Name != "secrets" && !strings.Contains(r.Name, "/") {
			coreRes = append(coreRes, r.Name)
		}
	}
	groups, err := cs.Discovery().ServerGroups()
	if err != nil {
		t.Fatal(err)
	}
	var others []string
	for _, g := range groups.Groups {
		if g.Name != "" {
			others = append(others, g.Name)
		}
	}
	verbs := []string{"get", "list"}
	_, err = cs.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "lifeboat-all-but-secrets"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: coreRes, Verbs: verbs},
			{APIGroups: others, Resources: []string{"*"}, Verbs: verbs},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "lifeboat-all-but-secrets"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "lifeboat-all-but-secrets"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

// TestRunManifestsForbidden: a service account that may list everything
// but Secrets gets a partial backup that names secrets as skipped, both in
// the manifests section and in the manifest's skipped list; and an
// encryption config Secret it may not read fails the run naming it.
func TestRunManifestsForbidden(t *testing.T) {
	ctx := testContext(t)
	c := testenv.StartCluster(t)
	cfg := c.RESTConfig(c.Token)
	testenv.SeedCluster(t, cfg)
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	grantAllButSecrets(t, cs, testenv.RestrictedUser)

	f := newFixture(t)
	p := plan("restricted", config.Source{Manifests: &config.ManifestsSource{}})
	p.Spec.Cluster = &config.ClusterRef{Kubeconfig: c.RestrictedKubeconfig}
	m, err := backup.Run(ctx, backup.Options{Plan: p, Store: f.st, Keys: f.keyring, Version: "test"})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if m.Status != catalog.StatusPartial || len(m.Skipped) != 1 || m.Skipped[0].Source != catalog.SourceManifests ||
		!strings.HasPrefix(m.Skipped[0].Reason, "secrets/v1: ") || !strings.Contains(m.Skipped[0].Reason, "forbidden") {
		t.Fatalf("skipped: %+v", m.Skipped)
	}
	if s := m.Manifests.Skipped; len(s) != 1 || s[0].Resource != "secrets/v1" || !strings.Contains(s[0].Reason, testenv.RestrictedUser) {
		t.Fatalf("manifests.skipped: %+v", s)
	}
	order, _ := untar(t, decrypt(t, f, m, catalog.ArtifactManifests))
	for _, p := range order {
		if strings.HasPrefix(p, "core/v1/secrets/") {
			t.Fatalf("exported %s", p)
		}
	}
	if !slices.Contains(order, "core/v1/configmaps/ehr/settings.yaml") {
		t.Fatal("configmaps missing")
	}

	// The same user may not read the encryption config Secret.
	p = plan("restricted", config.Source{EncryptionConfig: &config.EncryptionConfigSource{SecretRef: &config.SecretKeyRef{
		Namespace: "ehr", Name: "db", Key: "password"}}})
	p.Spec.Cluster = &config.ClusterRef{Kubeconfig: c.RestrictedKubeconfig}
	_, err = backup.Run(ctx, backup.Options{Plan: p, Store: f.st, Keys: f.keyring, Version: "test"})
	if err == nil || !strings.Contains(err.Error(), "secret ehr/db key password") || !strings.Contains(err.Error(), "forbidden") {
		t.Fatalf("Run: %v", err)
	}
}

// expiringProxy starts a TLS proxy in front of c's API server that lists
// configmaps 4 at a time and answers the first continued list of them as
// the API server does when etcd has compacted past the token's revision:
// 410 Gone, with a continue token that goes on from the same key at the
// latest revision. It returns a kubeconfig for the proxy with c's admin
// token.
func expiringProxy(t *testing.T, c *testenv.Cluster) string {
	t.Helper()
	rt, err := rest.TransportFor(&rest.Config{TLSClientConfig: rest.TLSClientConfig{CAFile: c.CAFile}})
	if err != nil {
		t.Fatal(err)
	}
	upstream, err := url.Parse(c.Server)
	if err != nil {
		t.Fatal(err)
	}
	var expired atomic.Bool
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if strings.HasSuffix(r.URL.Path, "/configmaps") && q.Has("limit") {
			if cont := q.Get("continue"); cont != "" && expired.CompareAndSwap(false, true) {
				raw, err := base64.RawURLEncoding.DecodeString(cont)
				var tok map[string]any
				if err == nil {
					err = json.Unmarshal(raw, &tok)
				}
				if err != nil {
					http.Error(w, "continue token: "+err.Error(), http.StatusBadRequest)
					return
				}
				tok["rv"] = -1
				raw, _ = json.Marshal(tok)
				body, _ := json.Marshal(metav1.Status{
					TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusFailure,
					Message: "The provided continue parameter is too old to display a consistent list result.",
					Reason:  metav1.StatusReasonExpired, Code: http.StatusGone,
					ListMeta: metav1.ListMeta{Continue: base64.RawURLEncoding.EncodeToString(raw)},
				})
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusGone)
				w.Write(body)
				return
			}
			q.Set("limit", "4")
		}
		out := r.Clone(r.Context())
		out.RequestURI = ""
		out.URL.Scheme, out.URL.Host, out.Host = upstream.Scheme, upstream.Host, upstream.Host
		out.URL.RawQuery = q.Encode()
		resp, err := rt.RoundTrip(out)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	}))
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	ca := filepath.Join(dir, "proxy-ca.crt")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
  - name: proxy
    cluster:
      server: %q
      certificate-authority: %q
users:
  - name: admin
    user:
      token: %q
contexts:
  - name: proxy
    context:
      cluster: proxy
      user: admin
current-context: proxy
`, srv.URL, ca, c.Token)
	if err := os.WriteFile(kubeconfig, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !expired.Load() {
			t.Error("no continued list of configmaps went through the proxy")
		}
	})
	return kubeconfig
}

// TestRunManifestsInconsistent: a resource listed across an expired
// continue token makes the backup partial, named in the manifest's
// manifests.inconsistent and skipped (what backup show, drills and
// evidence read), not only in the encrypted index.
func TestRunManifestsInconsistent(t *testing.T) {
	ctx := testContext(t)
	c := testenv.StartCluster(t)
	testenv.SeedConfigMaps(t, c.RESTConfig(c.Token), 30, 1, 16, 4)

	f := newFixture(t)
	p := plan("cluster", config.Source{Manifests: &config.ManifestsSource{IncludeNamespaces: []string{"bulk-0"}}})
	p.Spec.Cluster = &config.ClusterRef{Kubeconfig: expiringProxy(t, c)}
	m, err := backup.Run(ctx, backup.Options{Plan: p, Store: f.st, Keys: f.keyring, Version: "test"})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	want := catalog.Skip{Source: catalog.SourceManifests, Reason: "configmaps/v1: " + catalog.InconsistentReason}
	if m.Status != catalog.StatusPartial || len(m.Skipped) != 1 || m.Skipped[0] != want {
		t.Fatalf("status %s, skipped %+v", m.Status, m.Skipped)
	}
	if x := m.Manifests; x == nil || !slices.Equal(x.Inconsistent, []string{"configmaps/v1"}) || len(x.Skipped) != 0 {
		t.Fatalf("manifests section: %+v", m.Manifests)
	}
	stored, err := catalog.Read(ctx, f.st, m.Backup)
	if err != nil || stored.Status != catalog.StatusPartial || !slices.Equal(stored.Manifests.Inconsistent, []string{"configmaps/v1"}) {
		t.Fatalf("Read: %v, %+v", err, stored)
	}
	_, members := untar(t, decrypt(t, f, m, catalog.ArtifactManifests))
	var idx manifests.Index
	if err := json.Unmarshal(members[manifests.IndexMember], &idx); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range idx.Objects {
		if e.Kind == "ConfigMap" && e.Namespace == "bulk-0" {
			n++
		}
	}
	if !slices.Equal(idx.Inconsistent, []string{"configmaps/v1"}) || n < 30 {
		t.Fatalf("index: inconsistent %v, %d configmaps", idx.Inconsistent, n)
	}
}

// TestRunEncryptionConfigSecretErrors: a missing Secret, a missing key and
// a value that is not an EncryptionConfiguration each fail the run with an
// error naming namespace, name and key, never quoting the value, and
// commit nothing.
func TestRunEncryptionConfigSecretErrors(t *testing.T) {
	ctx := testContext(t)
	c := testenv.StartCluster(t)
	cs, err := kubernetes.NewForConfig(c.RESTConfig(c.Token))
	if err != nil {
		t.Fatal(err)
	}
	putSecret(t, cs, "default", "enc", "config.yaml", []byte("key: [unclosed PHI-canary-3"))
	putSecret(t, cs, "default", "wrongkind", "config.yaml", []byte("apiVersion: v1\nkind: ConfigMap\n"))
	f := newFixture(t)
	for _, tc := range []struct {
		ref  config.SecretKeyRef
		want []string
	}{
		{config.SecretKeyRef{Namespace: "default", Name: "absent", Key: "config.yaml"}, []string{"secret default/absent key config.yaml", "not found"}},
		{config.SecretKeyRef{Namespace: "default", Name: "enc", Key: "other.yaml"}, []string{"secret default/enc key other.yaml", `has no key "other.yaml"`}},
		{config.SecretKeyRef{Namespace: "default", Name: "enc", Key: "config.yaml"}, []string{"secret default/enc key config.yaml", "not valid YAML"}},
		{config.SecretKeyRef{Namespace: "default", Name: "wrongkind", Key: "config.yaml"}, []string{"secret default/wrongkind key config.yaml", "kind is not EncryptionConfiguration"}},
	} {
		ref := tc.ref
		p := plan("enc", config.Source{EncryptionConfig: &config.EncryptionConfigSource{SecretRef: &ref}})
		p.Spec.Cluster = &config.ClusterRef{Kubeconfig: c.Kubeconfig}
		_, err := backup.Run(ctx, backup.Options{Plan: p, Store: f.st, Keys: f.keyring, Version: "test"})
		var re *backup.RunError
		if !errors.As(err, &re) || re.Step != config.SourceEncryptionConfig {
			t.Fatalf("%+v: %v", ref, err)
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%+v: error %q lacks %q", ref, err, w)
			}
		}
		if strings.Contains(err.Error(), "PHI-canary") {
			t.Errorf("error quotes the value: %v", err)
		}
	}
	for _, k := range objects(t, f.st) {
		if strings.HasSuffix(k, "manifest.json") {
			t.Fatalf("a failed run committed %s", k)
		}
	}
	var _ store.Store = f.st
}
