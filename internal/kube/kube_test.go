package kube

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const kubeconfig = `apiVersion: v1
kind: Config
clusters:
- name: a
  cluster: {server: "https://127.0.0.1:6443"}
- name: b
  cluster: {server: "https://127.0.0.1:7443"}
users:
- name: u
  user: {token: "secret-token-value"}
contexts:
- name: ctx-a
  context: {cluster: a, user: u}
- name: ctx-b
  context: {cluster: b, user: u}
current-context: ctx-a
`

func TestConfigFromFile(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, []byte(kubeconfig), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ context, host string }{{"", "https://127.0.0.1:6443"}, {"ctx-b", "https://127.0.0.1:7443"}} {
		cfg, err := Config(Options{Kubeconfig: path, Context: tc.context})
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Host != tc.host || cfg.QPS != QPS || cfg.Burst != Burst || cfg.UserAgent != "lifeboat" {
			t.Errorf("context %q: host %q qps %v burst %d agent %q", tc.context, cfg.Host, cfg.QPS, cfg.Burst, cfg.UserAgent)
		}
	}
	// $KUBECONFIG is used when the plan names no file.
	t.Setenv("KUBECONFIG", path)
	cfg, err := Config(Options{Context: "ctx-b"})
	if err != nil || cfg.Host != "https://127.0.0.1:7443" {
		t.Fatalf("from $KUBECONFIG: %v, %+v", err, cfg)
	}
}

func TestConfigErrorsNameTheFileNotTheToken(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	if _, err := Config(Options{Kubeconfig: missing}); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing file: %v", err)
	}
	path := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(path, []byte(kubeconfig), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Config(Options{Kubeconfig: path, Context: "nope"})
	if err == nil || !strings.Contains(err.Error(), path) || strings.Contains(err.Error(), "secret-token-value") {
		t.Errorf("unknown context: %v", err)
	}
	t.Setenv("KUBECONFIG", filepath.Join(dir, "none"))
	t.Setenv("HOME", dir)
	if _, err := Config(Options{}); err == nil || !strings.Contains(err.Error(), "spec.cluster.kubeconfig") {
		t.Errorf("nothing configured: %v", err)
	}
}
