package drill

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/backup"
	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/keys/local"
	"github.com/lifeboat-dr/lifeboat/internal/scratch/embedded"
	"github.com/lifeboat-dr/lifeboat/internal/store/fs"
	"github.com/lifeboat-dr/lifeboat/internal/testenv"
)

const canaryConfig = storeAndKeys + `
apiVersion: lifeboat.dev/v1alpha1
kind: BackupPlan
metadata: {name: vault-keys}
spec:
  store: test-store
  keyProvider: test-keys
  retention: 1d
  sources:
    - etcd: {endpoints: [%[3]q], dialTimeout: 30s}
    - vault: {address: %[4]q, transitKeys: [ehr-plain, ehr-derived]}
---
apiVersion: lifeboat.dev/v1alpha1
kind: BackupPlan
metadata: {name: etcd-only}
spec:
  store: test-store
  keyProvider: test-keys
  retention: 1d
  sources:
    - etcd: {endpoints: [%[3]q], dialTimeout: 30s}
---
apiVersion: lifeboat.dev/v1alpha1
kind: Drill
metadata: {name: vault-canary}
spec:
  backupPlan: vault-keys
  select: {latest: true}
  checks:
    - canary: {}
  targets: {rto: 15m, rpo: 1h}
`

// vaultAPI makes one request to a test Vault with its root token.
func vaultAPI(t *testing.T, ctx context.Context, v *testenv.Vault, method, path string, body any) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, method, v.Address+"/v1/"+path, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Vault-Token", v.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		rb, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s %s: %s: %s", method, path, resp.Status, rb)
	}
}

// TestDrillCanary backs up an etcd and a Vault's transit keys (one
// derived, one rotated), then drills the backup: the canary check
// restores the keys into a scratch Vault and decrypts the canaries. A
// backup whose manifest was tampered with (a canary digest changed, the
// store's record forged to match) fails the check naming the key, and so
// does a drill of a plan without transit keys.
func TestDrillCanary(t *testing.T) {
	ctx := testContext(t, 4*time.Minute)
	apiserver := testenv.Binary(t, "kube-apiserver")
	vaultBin := testenv.Binary(t, "vault")
	etcd := testenv.StartEtcd(t)
	v := testenv.StartVault(t)
	vaultAPI(t, ctx, v, http.MethodPost, "sys/mounts/transit", map[string]any{"type": "transit"})
	vaultAPI(t, ctx, v, http.MethodPost, "transit/keys/ehr-derived", map[string]any{"derived": true, "exportable": true, "allow_plaintext_backup": true})
	vaultAPI(t, ctx, v, http.MethodPost, "transit/keys/ehr-plain", map[string]any{"exportable": true, "allow_plaintext_backup": true})
	vaultAPI(t, ctx, v, http.MethodPost, "transit/keys/ehr-plain/rotate", map[string]any{})

	dir := t.TempDir()
	cfg := filepath.Join(dir, "lifeboat.yaml")
	keyring := filepath.Join(dir, "keyring.json")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, canaryConfig, filepath.Join(dir, "store"), keyring, etcd.Endpoint, v.Address), 0o600); err != nil {
		t.Fatal(err)
	}
	set, err := config.LoadPaths(cfg)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := local.Create(ctx, local.Options{Path: keyring}, "test-kek")
	if err != nil {
		t.Fatal(err)
	}
	st, err := fs.Open(ctx, fs.Options{Root: filepath.Join(dir, "store")})
	if err != nil {
		t.Fatal(err)
	}
	backups := map[string]catalog.Manifest{}
	for _, name := range []string{"vault-keys", "etcd-only"} {
		plan, _ := set.BackupPlan(name)
		m, err := backup.Run(ctx, backup.Options{Plan: plan, Store: st, Keys: keys, VaultToken: v.Token})
		if err != nil {
			t.Fatalf("backup %s: %v", name, err)
		}
		backups[name] = m
	}
	var logs bytes.Buffer
	options := func(t *testing.T, planName string) Options {
		d, _ := set.Drill("vault-canary")
		if planName != d.Spec.BackupPlan {
			// Config validation refuses a canary check on a plan without
			// transit keys; the drill must refuse it too when handed one.
			dd := *d
			dd.Spec.BackupPlan = planName
			d = &dd
		}
		plan, _ := set.BackupPlan(planName)
		return Options{
			Drill: d, Plan: plan, Store: st, Keys: keys, Scratch: embedded.Provider{KubeAPIServerBinary: apiserver},
			TempDir: t.TempDir(), VaultBinary: vaultBin,
			Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
			Progress: func(ev Event) {
				t.Logf("[%6.2fs] %-19s %s", ev.Elapsed.Seconds(), ev.Phase, ev.Message)
			},
		}
	}
	canary := func(t *testing.T, res Result) evidence.Check {
		t.Helper()
		for _, c := range res.Checks {
			if c.Name == config.CheckCanary {
				return c
			}
		}
		t.Fatalf("no canary check in %+v (err %v)", res.Checks, res.Err)
		return evidence.Check{}
	}

	t.Run("pass", func(t *testing.T) {
		res, err := Run(ctx, options(t, "vault-keys"))
		c := canary(t, res)
		if err != nil || res.Verdict != evidence.VerdictPass || c.Outcome != evidence.CheckPass {
			t.Fatalf("drill: %v; canary %+v; reasons %q", err, c, res.Reasons)
		}
		for _, want := range []string{"restored 2 transit keys", "ehr-plain (latest version 2)", "ehr-derived (latest version 1)", "SHA-256 in the manifest"} {
			if !strings.Contains(c.Detail, want) {
				t.Errorf("canary detail %q does not say %q", c.Detail, want)
			}
		}
		if strings.Contains(logs.String(), v.Token) {
			t.Error("the Vault token is in the logs")
		}
	})

	t.Run("plan without transit keys", func(t *testing.T) {
		res, err := Run(ctx, options(t, "etcd-only"))
		c := canary(t, res)
		if err == nil || res.Verdict != evidence.VerdictFail || c.Outcome != evidence.CheckFail ||
			!strings.Contains(c.Detail, "plan etcd-only has no vault source with transitKeys") {
			t.Fatalf("drill: %v; canary %+v", err, c)
		}
	})

	t.Run("tampered canary digest", func(t *testing.T) {
		m := backups["vault-keys"]
		m.Vault.TransitKeys[0].CanarySHA256 = strings.Repeat("ab", 32)
		b, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		rewrite(t, dir, catalog.ManifestKey(m.Backup), b)
		// Changed without the data key, the manifest fails its MAC before
		// any check runs.
		res, err := Run(ctx, options(t, "vault-keys"))
		if !errors.Is(err, catalog.ErrVerification) || !strings.Contains(err.Error(), "MAC") || res.Verdict != evidence.VerdictFail {
			t.Fatalf("drill of a manifest changed without the data key: %v, verdict %s; want its MAC to fail", err, res.Verdict)
		}
		// Resealed with the data key (a writer who can unwrap it), the
		// canary check is what catches the digest.
		o := options(t, "vault-keys")
		dk, _, err := catalog.OpenKey(ctx, o.Store, m.Backup, m.DataKeyID, o.Keys)
		if err != nil {
			t.Fatal(err)
		}
		err = m.Seal(dk)
		dk.Destroy()
		if err != nil {
			t.Fatal(err)
		}
		if b, err = m.Marshal(); err != nil {
			t.Fatal(err)
		}
		rewrite(t, dir, catalog.ManifestKey(m.Backup), b)
		res, err = Run(ctx, o)
		c := canary(t, res)
		if err == nil || res.Verdict != evidence.VerdictFail || c.Outcome != evidence.CheckFail ||
			!strings.Contains(c.Detail, "1 of 2 transit keys failed: transit key ehr-plain: canary decrypted to SHA-256") ||
			!strings.Contains(c.Detail, "restored and decrypted: ehr-derived") {
			t.Fatalf("drill: %v; canary %+v", err, c)
		}
	})
}

// rewrite replaces an object in the fs store under dir/store with b and
// forges its record to match, as an attacker with write access to the
// store's disk could.
func rewrite(t *testing.T, dir, key string, b []byte) {
	t.Helper()
	obj := filepath.Join(dir, "store", "objects", key)
	os.Chmod(obj, 0o640)
	if err := os.WriteFile(obj, b, 0o440); err != nil {
		t.Fatal(err)
	}
	rec := filepath.Join(dir, "store", "retention", key+".json")
	rb, err := os.ReadFile(rec)
	if err != nil {
		t.Fatal(err)
	}
	var r map[string]any
	if err := json.Unmarshal(rb, &r); err != nil {
		t.Fatal(err)
	}
	r["sha256"], r["size"] = evidence.Hash(b), len(b)
	rb, _ = json.Marshal(r)
	os.Chmod(rec, 0o640)
	if err := os.WriteFile(rec, rb, 0o440); err != nil {
		t.Fatal(err)
	}
}
