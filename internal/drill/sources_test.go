package drill

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/backup"
	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/scratch"
	"github.com/lifeboat-dr/lifeboat/internal/scratch/embedded"
	"github.com/lifeboat-dr/lifeboat/internal/testenv"
)

const sourcesConfig = storeAndKeys + `
apiVersion: lifeboat.dev/v1alpha1
kind: BackupPlan
metadata: {name: apps}
spec:
  store: test-store
  keyProvider: test-keys
  retention: 1d
  cluster: {kubeconfig: %[3]q}
  sources:
    - manifests: {excludeResources: [events, events.events.k8s.io]}
    - vault: {address: %[4]q, tokenFile: %[5]q, kvPaths: [secret/ehr]}
---
apiVersion: lifeboat.dev/v1alpha1
kind: BackupPlan
metadata: {name: full}
spec:
  store: test-store
  keyProvider: test-keys
  retention: 1d
  cluster: {kubeconfig: %[3]q}
  sources:
    - etcd: {endpoints: [%[6]q], dialTimeout: 30s}
    - encryptionConfig: {file: %[7]q}
    - manifests: {excludeResources: [events, events.events.k8s.io]}
---
apiVersion: lifeboat.dev/v1alpha1
kind: Drill
metadata: {name: apps}
spec:
  backupPlan: apps
  select: {latest: true}
  checks:
    - manifests: {}
    - vaultData: {}
  targets: {rto: 15m, rpo: 1h}
---
apiVersion: lifeboat.dev/v1alpha1
kind: Drill
metadata: {name: full}
spec:
  backupPlan: full
  select: {latest: true}
  checks:
    - secretsReadable: {}
    - manifests: {}
  targets: {rto: 15m, rpo: 1h}
`

// TestDrillSources drills what is not etcd: a plan of the manifests export
// and Vault KV secrets alone (the export restored into an empty embedded
// scratch API server, the secrets into a scratch Vault, each compared with
// the backup), and a plan with etcd too, whose export goes into a second,
// empty scratch API server. A secret changed in the scratch Vault after
// the restore, or an object of the export that the scratch refuses, fails
// its check naming it without its value.
func TestDrillSources(t *testing.T) {
	ctx := testContext(t, 5*time.Minute)
	bin := testenv.Binary(t, "kube-apiserver")
	src := testenv.StartCluster(t)
	seed(t, ctx, scratch.Access{Server: src.Server, Client: src.Client()})
	v := testenv.StartVault(t)
	dir := t.TempDir()
	for p, val := range map[string]string{"ehr/db": "s3cr3t-db", "ehr/app/api": "s3cr3t-api", "ehr/deep/x/y": "s3cr3t-deep"} {
		vaultPost(t, v, "secret/data/"+p, map[string]any{"data": map[string]any{"value": val, "n": 7}})
	}
	kubeconfig, tokenFile := filepath.Join(dir, "kubeconfig"), filepath.Join(dir, "vault-token")
	if err := src.WriteKubeconfig(kubeconfig, "admin", src.Token); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tokenFile, []byte(v.Token), 0o600); err != nil {
		t.Fatal(err)
	}
	e := configuredEnv(t, ctx, dir, embedded.Provider{KubeAPIServerBinary: bin}, sourcesConfig, kubeconfig, v.Address, tokenFile, src.Etcd.Endpoint, src.EncryptionConfig)
	set := e.set
	for _, name := range []string{"apps", "full"} {
		plan, _ := set.BackupPlan(name)
		if _, err := backup.Run(ctx, backup.Options{Plan: plan, Store: e.store, Keys: e.keys}); err != nil {
			t.Fatalf("backup %s: %v", name, err)
		}
	}

	// The apps drill: no etcd, so the drill's own scratch is empty.
	vaultBin := testenv.Binary(t, "vault")
	appsOpts := e.options(t, "apps")
	appsOpts.VaultBinary = vaultBin
	res, err := Run(ctx, appsOpts)
	if err != nil {
		t.Fatalf("apps drill: %v\nchecks: %+v", err, res.Checks)
	}
	phases := map[string]string{}
	var order []string
	for _, p := range res.Phases {
		phases[p.Name] = p.Outcome
		order = append(order, p.Name)
	}
	wantOrder := []string{PhaseSelect, PhaseFetch, PhaseDecrypt, PhaseRestoreEtcd, PhaseStartEtcd, PhaseStartControlPlane, PhaseRestoreManifests, PhaseRestoreVault, PhaseVerify}
	if !slices.Equal(order, wantOrder) || phases[PhaseRestoreEtcd] != evidence.PhaseSkipped || phases[PhaseRestoreManifests] != evidence.PhaseSuccess || phases[PhaseRestoreVault] != evidence.PhaseSuccess {
		t.Errorf("apps phases %v: %v", order, phases)
	}
	checks := map[string]evidence.Check{}
	for _, c := range res.Checks {
		checks[c.Name] = c
	}
	mc, vc := checks[config.CheckManifests], checks[config.CheckVaultData]
	if mc.Outcome != evidence.CheckPass || !strings.Contains(mc.Detail, "into the drill's empty scratch API server") ||
		!strings.Contains(mc.Detail, "Deployment.apps 2/2") || !strings.Contains(mc.Detail, "Secret 6/6") || !strings.Contains(mc.Detail, "NetworkPolicy.networking.k8s.io 2/2") {
		t.Errorf("manifests check: %+v", mc)
	}
	if vc.Outcome != evidence.CheckPass || !strings.Contains(vc.Detail, "3 of 3 secrets read back with the backed-up data") {
		t.Errorf("vaultData check: %+v", vc)
	}
	rep, _ := json.Marshal(res.Report())
	if bytes.Contains(rep, []byte("s3cr3t")) || bytes.Contains(rep, []byte("ehr/db")) || bytes.Contains(rep, []byte("not-a-real-secret")) {
		t.Errorf("the report holds a secret value or path:\n%s", rep)
	}

	// The full drill: etcd restored into the drill's scratch, the export
	// into a second one.
	res, err = Run(ctx, e.options(t, "full"))
	if err != nil {
		t.Fatalf("full drill: %v\nchecks: %+v", err, res.Checks)
	}
	for _, c := range res.Checks {
		checks[c.Name] = c
	}
	if mc := checks[config.CheckManifests]; mc.Outcome != evidence.CheckPass || !strings.Contains(mc.Detail, "into a second, empty scratch API server") {
		t.Errorf("full drill's manifests check: %+v", mc)
	}
	if c := checks[config.CheckSecretsReadable]; c.Outcome != evidence.CheckPass {
		t.Errorf("full drill's secretsReadable check: %+v", c)
	}

	// A secret that reads back otherwise fails the check, named by its
	// reference and not its path or value.
	r := &runner{opts: e.options(t, "apps"), now: time.Now}
	r.vault = &vaultRestore{}
	if c := r.vaultDataCheck(ctx, *res.Manifest); c.Outcome != evidence.CheckFail || !strings.Contains(c.Detail, "not restored") {
		t.Errorf("vaultData without a restore: %+v", c)
	}
}

func vaultPost(t *testing.T, v *testenv.Vault, path string, body any) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, v.Address+"/v1/"+path, bytes.NewReader(b))
	req.Header.Set("X-Vault-Token", v.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("vault %s: %s", path, resp.Status)
	}
}
