package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/scratch"
	"github.com/lifeboat-dr/lifeboat/internal/scratch/embedded"
	"github.com/lifeboat-dr/lifeboat/internal/testenv"
)

const breakGlassConfig = `apiVersion: lifeboat.dev/v1alpha1
kind: Store
metadata: {name: local}
spec:
  type: fs
  path: %[1]q
  objectLock: {mode: COMPLIANCE, retention: 1d}
---
apiVersion: lifeboat.dev/v1alpha1
kind: KeyProvider
metadata: {name: vault-transit}
spec: {type: vault, address: %[2]q, transitKey: clinic, tokenFile: %[3]q}
---
apiVersion: lifeboat.dev/v1alpha1
kind: KeyProvider
metadata: {name: breakglass}
spec: {type: local, keyring: %[4]q}
---
apiVersion: lifeboat.dev/v1alpha1
kind: BackupPlan
metadata: {name: control-plane}
spec:
  store: local
  keyProviders: [vault-transit, breakglass]
  retention: 1d
  sources:
    - etcd: {endpoints: [%[5]q], dialTimeout: 30s}
    - encryptionConfig: {file: %[6]q}
---
apiVersion: lifeboat.dev/v1alpha1
kind: Drill
metadata: {name: breakglass}
spec:
  backupPlan: control-plane
  keyProvider: breakglass
  select: {latest: true}
  checks:
    - inventory: {excludeResources: [events, events.events.k8s.io]}
    - secretsReadable: {}
  targets: {rto: 15m, rpo: 1h}
---
apiVersion: lifeboat.dev/v1alpha1
kind: RotationPolicy
metadata: {name: vault-quarterly}
spec: {keyProvider: vault-transit, retireOldVersions: afterVerifiedRewrap}
`

// TestBreakGlass is issue 12's trap and its way out. A plan lists two key
// providers: Vault transit (which in production runs in the cluster it
// protects) and a break-glass local keyring. A backup of a real cluster
// wraps its data key under both (two key objects, the manifest naming the
// second in alsoWrapped). Rotating Vault's KEK and retiring its old
// version touches only Vault's key objects. Then Vault is stopped, as if
// lost with the cluster: `backup verify --read-data` still reads every
// byte through the break-glass keyring, the Drill restricted to it passes
// and its evidence record names it, while `--key-provider vault-transit`
// now fails, and a provider the plan does not list is refused.
func TestBreakGlass(t *testing.T) {
	t.Setenv(embedded.EnvKubeAPIServer, testenv.Binary(t, "kube-apiserver"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	src := testenv.StartCluster(t)
	if _, err := seedDemoCluster(ctx, scratch.Access{Server: src.Server, Client: src.Client()}); err != nil {
		t.Fatal(err)
	}
	v, tokenFile := startTransit(t)
	dir := t.TempDir()
	storeDir, keyring, signingKey := filepath.Join(dir, "store"), filepath.Join(dir, "breakglass.json"), filepath.Join(dir, "signing.pem")
	cfg := filepath.Join(dir, "lifeboat.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, breakGlassConfig, storeDir, v.Address, tokenFile, keyring, src.Etcd.Endpoint, src.EncryptionConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errs, code := keysCreate(t, cfg, "vault-transit"); code != ExitOK {
		t.Fatalf("keys create vault-transit: %s", errs)
	}
	if _, errs, code := run(t, "keys", "init", "--keyring", keyring, "--key", "breakglass-kek"); code != ExitOK {
		t.Fatalf("keys init: %s", errs)
	}

	out, errs, code := run(t, "--config", cfg, "-o", "json", "backup", "run", "control-plane", "--signing-key", signingKey)
	if code != ExitOK {
		t.Fatalf("backup run: exit %d\n%s\n%s", code, out, errs)
	}
	var m catalog.Manifest
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatal(err)
	}
	if m.KEK.Provider != "vault" || len(m.AlsoWrapped) != 1 || m.AlsoWrapped[0].Provider != "local" || m.AlsoWrapped[0].Key != "breakglass-kek" {
		t.Fatalf("manifest kek %s, alsoWrapped %v: want vault, then the break-glass keyring", m.KEK, m.AlsoWrapped)
	}
	keyObjects := func() []string {
		t.Helper()
		ents, err := os.ReadDir(filepath.Join(storeDir, "objects", filepath.FromSlash(catalog.KeysPrefix(m.Backup))))
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		return names
	}
	if ko := keyObjects(); len(ko) != 2 {
		t.Fatalf("key objects %v, want one per key provider", ko)
	}
	pub := filepath.Join(dir, "signer.pub")
	pem, errs, code := run(t, "evidence", "public-key", signingKey)
	if code != ExitOK {
		t.Fatal(errs)
	}
	if err := os.WriteFile(pub, []byte(pem), 0o600); err != nil {
		t.Fatal(err)
	}

	// Rotating Vault rewraps under its new version and retires the old
	// one; the break-glass key object is left as it was.
	out, errs, code = run(t, "--config", cfg, "keys", "rotate", "vault-quarterly", "--signing-key", signingKey)
	if code != ExitOK {
		t.Fatalf("keys rotate: exit %d\n%s\n%s", code, out, errs)
	}
	if ko := keyObjects(); len(ko) != 3 {
		t.Fatalf("key objects after rotating Vault %v, want 3 (vault v1, vault v2, break-glass)", ko)
	}

	// Vault is gone with the cluster.
	v.Stop()
	out, errs, code = run(t, "--config", cfg, "backup", "verify", m.Backup, "--read-data", "--key", pub)
	if code != ExitOK || !strings.Contains(out, "MAC ok") {
		t.Fatalf("backup verify --read-data without Vault: exit %d\n%s\n%s", code, out, errs)
	}
	// restore plan shows which recipients still unwrap: the break-glass
	// keyring does, Vault cannot be reached.
	out, errs, code = run(t, "--config", cfg, "restore", "plan", m.Backup, "--member", "etcd-a=http://127.0.0.1:2380", "--out", filepath.Join(dir, "restore"), "--key", pub)
	if code != ExitOK || !strings.Contains(out, "key object local:breakglass-kek@1: unwraps") || !strings.Contains(out, "key object vault:transit/clinic@2: does not unwrap") {
		t.Fatalf("restore plan without Vault: exit %d\n%s\n%s", code, out, errs)
	}
	t.Logf("restore plan without Vault:\n%s", out)
	out, errs, code = runOwn(t, newDrillCommand, []string{cfg}, "drill", "run", "breakglass", "--signing-key", signingKey)
	t.Logf("break-glass drill:\n%s", out)
	if code != ExitOK || !strings.Contains(out, ": PASS") || !strings.Contains(out, "Data key unwrapped with local:breakglass-kek@1 (key providers tried: breakglass)") {
		t.Fatalf("break-glass drill: exit %d\n%s\n%s", code, out, errs)
	}
	rec := lastDrillRecord(t, storeDir)
	if fmt.Sprint(rec["keyProviders"]) != "[breakglass]" || !strings.HasPrefix(fmt.Sprint(rec["unwrappedWith"]), "local:breakglass-kek@") {
		t.Fatalf("drill record keyProviders %v, unwrappedWith %v", rec["keyProviders"], rec["unwrappedWith"])
	}
	out, errs, code = runOwn(t, newDrillCommand, []string{cfg}, "drill", "run", "breakglass", "--key-provider", "vault-transit", "--signing-key", signingKey)
	if code == ExitOK {
		t.Fatalf("a drill through the stopped Vault passed:\n%s\n%s", out, errs)
	}
	_, errs, code = runOwn(t, newDrillCommand, []string{cfg}, "drill", "run", "breakglass", "--key-provider", "no-such", "--signing-key", signingKey)
	if code == ExitOK || !strings.Contains(errs, `"no-such"`) {
		t.Fatalf("a key provider the plan does not list: exit %d\n%s", code, errs)
	}
	out, errs, code = run(t, "evidence", "verify", "--store-path", storeDir, "--key", pub)
	if code != ExitOK {
		t.Fatalf("evidence verify: exit %d\n%s\n%s", code, out, errs)
	}
}

// lastDrillRecord returns the subject of the newest drill record in the fs
// store at root.
func lastDrillRecord(t *testing.T, root string) map[string]any {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(root, "objects", "evidence"))
	if err != nil {
		t.Fatal(err)
	}
	var last string
	for _, e := range ents {
		if strings.Contains(e.Name(), "-drill-") {
			last = e.Name()
		}
	}
	data, err := os.ReadFile(filepath.Join(root, "objects", "evidence", last))
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Subject map[string]any `json:"subject"`
	}
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatal(err)
	}
	return r.Subject
}
