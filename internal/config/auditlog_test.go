package config

import (
	"strings"
	"testing"
	"time"
)

const auditLogYAML = `apiVersion: lifeboat.dev/v1alpha1
kind: AuditLog
metadata: {name: apiserver}
spec:
  store: store
  keyProviders: [keys, other-keys]
  webhook:
    listen: ":8443"
    certFile: /etc/lifeboat/audit-tls/tls.crt
    keyFile: /etc/lifeboat/audit-tls/tls.key
    clientCAFile: /etc/lifeboat/audit-tls/client-ca.crt
    clientNames: [kube-apiserver-audit]
`

func TestAuditLogDefaults(t *testing.T) {
	set, err := LoadPaths(writeFiles(t, map[string]string{"a.yaml": base, "audit.yaml": auditLogYAML}))
	if err != nil {
		t.Fatal(err)
	}
	a, ok := set.AuditLog("apiserver")
	if !ok {
		t.Fatal("no AuditLog")
	}
	s := a.Spec
	if s.WALDir != DefaultAuditWALDir || s.Segment.MaxBytes != DefaultAuditSegmentBytes || s.Segment.MaxAge != DefaultAuditSegmentAge || s.Retention != DefaultRetention {
		t.Fatalf("defaults not applied: %+v", s)
	}
	st, _ := set.Store("store")
	if got := AuditRetention(a, st); got != 2190*24*time.Hour {
		t.Fatalf("retention %v", got)
	}
}

func TestAuditLogErrors(t *testing.T) {
	rotation := `apiVersion: lifeboat.dev/v1alpha1
kind: RotationPolicy
metadata: {name: rotate}
spec: {keyProvider: other-keys, retireOldVersions: afterVerifiedRewrap}
`
	bad := `apiVersion: lifeboat.dev/v1alpha1
kind: AuditLog
metadata: {name: Audit_Log}
spec:
  store: stor
  keyProvider: keys
  keyProviders: [keys]
  segment: {maxBytes: 1000}
  webhook: {listen: ":8443"}
`
	_, err := LoadPaths(writeFiles(t, map[string]string{"a.yaml": base, "b.yaml": bad}))
	checkErrors(t, err, []wantErr{
		{"b.yaml", 3, "metadata.name", "not a valid name"},
		{"b.yaml", 5, "spec.store", `no Store named "stor"`},
		{"b.yaml", 7, "spec.keyProviders", "cannot be combined with keyProvider"},
		{"b.yaml", 8, "spec.segment.maxBytes", "1 MiB"},
		{"b.yaml", 9, "spec.webhook.certFile", "required"},
		{"b.yaml", 9, "spec.webhook.clientCAFile", "required"},
		{"b.yaml", 9, "spec.webhook.clientNames", "required"},
		{"b.yaml", 9, "spec.webhook.keyFile", "required"},
	})
	_, err = LoadPaths(writeFiles(t, map[string]string{"a.yaml": base, "audit.yaml": auditLogYAML, "r.yaml": rotation}))
	checkErrors(t, err, []wantErr{{"audit.yaml", 6, "spec.keyProviders[1]", "audit segments are not rewrapped"}})
}

func TestAuditLogFileMode(t *testing.T) {
	file := `apiVersion: lifeboat.dev/v1alpha1
kind: AuditLog
metadata: {name: apiserver}
spec:
  store: store
  keyProvider: keys
  file: {path: /var/log/kubernetes/audit/audit.log}
`
	set, err := LoadPaths(writeFiles(t, map[string]string{"a.yaml": base, "f.yaml": file}))
	if err != nil {
		t.Fatal(err)
	}
	if a, _ := set.AuditLog("apiserver"); a.Spec.File == nil || a.Spec.Webhook != nil {
		t.Fatalf("spec %+v", a.Spec)
	}
	neither := strings.Replace(file, "  file: {path: /var/log/kubernetes/audit/audit.log}\n", "", 1)
	_, err = LoadPaths(writeFiles(t, map[string]string{"a.yaml": base, "f.yaml": neither}))
	checkErrors(t, err, []wantErr{{"f.yaml", 4, "spec", "webhook"}})
	relative := strings.Replace(file, "/var/log/kubernetes/audit/audit.log", "audit.log", 1)
	_, err = LoadPaths(writeFiles(t, map[string]string{"a.yaml": base, "f.yaml": relative}))
	checkErrors(t, err, []wantErr{{"f.yaml", 7, "spec.file.path", "absolute"}})
}
