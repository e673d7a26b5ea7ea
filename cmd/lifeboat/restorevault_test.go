package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/lifeboat-dr/lifeboat/internal/job"
	"github.com/lifeboat-dr/lifeboat/internal/testenv"
)

// TestRestoreVault: a backup of a real Vault's transit keys (a derived
// and a plain one) and KV v2 secrets is restored into a second real Vault.
// The dry run writes nothing and prints the target's cluster ID; --apply
// without it is refused; with it, each key is restored and its canary
// decrypts to the manifest's digest, the secrets read back equal, and a
// signed restore record names the target. A second apply skips what
// exists; --force-transit replaces the keys.
func TestRestoreVault(t *testing.T) {
	v1, tok1 := startTransit(t)
	for _, k := range []map[string]any{
		{"type": "aes256-gcm96", "derived": true, "exportable": true, "allow_plaintext_backup": true},
		{"type": "aes256-gcm96", "exportable": true, "allow_plaintext_backup": true},
	} {
		name := "ehr-plain"
		if k["derived"] == true {
			name = "ehr-derived"
		}
		vaultDo(t, v1, v1.Token, http.MethodPost, "transit/keys/"+name, k, nil)
	}
	vaultDo(t, v1, v1.Token, http.MethodPost, "transit/keys/ehr-plain/rotate", nil, nil)
	vaultDo(t, v1, v1.Token, http.MethodPost, "secret/data/ehr/db", map[string]any{"data": map[string]any{"password": "PHI-restore-canary"}}, nil)
	vaultDo(t, v1, v1.Token, http.MethodPost, "secret/data/ehr/api", map[string]any{"data": map[string]any{"key": "k-1"}}, nil)

	s := newRotateSetup(t)
	s.addPlan(t, fmt.Sprintf(`apiVersion: lifeboat.dev/v1alpha1
kind: BackupPlan
metadata: {name: vaultdata}
spec:
  store: local
  keyProvider: local
  retention: 1d
  sources:
    - vault: {address: %s, tokenFile: %s, transitKeys: [ehr-derived, ehr-plain], kvPaths: [secret/ehr]}
`, strconv.Quote(v1.Address), strconv.Quote(tok1)))
	m := s.backupRun(t, "vaultdata")

	v2, tok2 := startTransit(t)
	pub := s.signerPub(t)
	restore := func(extra ...string) (string, string, int) {
		return run(t, append([]string{"--config", s.config, "restore", "vault", m.Backup, "--vault-addr", v2.Address, "--vault-token-file", tok2, "--key", pub, "--signing-key", s.signingKey}, extra...)...)
	}
	keyExists := func(name string) bool {
		var out map[string]any
		return vaultGet(t, v2, "transit/keys/"+name, &out) == http.StatusOK
	}
	out, errs, code := restore()
	id := regexp.MustCompile(`cluster ID ([0-9a-f-]{36})`).FindStringSubmatch(out)
	if code != ExitOK || id == nil || !strings.Contains(out, "Nothing was written") || keyExists("ehr-plain") {
		t.Fatalf("dry run: exit %d\n%s\n%s", code, out, errs)
	}
	if strings.Contains(out+errs, "PHI-restore-canary") {
		t.Fatal("a secret value was printed")
	}
	_, errs, code = restore("--apply")
	if code == ExitOK || !strings.Contains(errs, "--confirm "+id[1]) {
		t.Fatalf("--apply without --confirm: exit %d\n%s", code, errs)
	}
	out, errs, code = restore("--apply", "--confirm", id[1])
	t.Logf("apply:\n%s", out)
	if code != ExitOK || strings.Count(out, ", canary decrypts") != 2 || strings.Count(out, "written") != 2 || strings.Contains(out+errs, "PHI-restore-canary") {
		t.Fatalf("apply: exit %d\n%s\n%s", code, out, errs)
	}
	var sec struct {
		Data struct {
			Data map[string]string `json:"data"`
		} `json:"data"`
	}
	if vaultGet(t, v2, "secret/data/ehr/db", &sec) != http.StatusOK || sec.Data.Data["password"] != "PHI-restore-canary" {
		t.Fatalf("restored secret %+v", sec)
	}
	recs := s.records(t, job.KindRestore)
	if len(recs) != 1 || recs[0].Subject["target"] != "vault" || recs[0].Subject["clusterId"] != id[1] {
		t.Fatalf("restore records %+v", recs)
	}
	out, errs, code = restore("--apply", "--confirm", id[1])
	if code != ExitOK || strings.Count(out, "skipped") != 4 {
		t.Fatalf("second apply: exit %d\n%s\n%s", code, out, errs)
	}
	out, errs, code = restore("--apply", "--confirm", id[1], "--force-transit")
	if code != ExitOK || strings.Count(out, ", canary decrypts") != 2 {
		t.Fatalf("--force-transit: exit %d\n%s\n%s", code, out, errs)
	}
}

// vaultGet GETs path from v as root and decodes a 200 answer into out; it
// returns the status code.
func vaultGet(t *testing.T, v *testenv.Vault, path string, out any) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, v.Address+"/v1/"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Vault-Token", v.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode
}

// TestRestoreVaultRaft: a backup of a real raft Vault (its raft snapshot
// and a transit key's canary) is force-restored into a second real raft
// Vault, which then holds the source's data under the source's seal: it
// is unsealed with the source's key if it seals, and the transit key's
// canary decrypts there with the source's token.
func TestRestoreVaultRaft(t *testing.T) {
	v1 := testenv.StartVaultRaft(t)
	vaultDo(t, v1, v1.Token, http.MethodPost, "sys/mounts/transit", map[string]any{"type": "transit"}, nil)
	vaultDo(t, v1, v1.Token, http.MethodPost, "transit/keys/ehr", map[string]any{"type": "aes256-gcm96", "exportable": true, "allow_plaintext_backup": true}, nil)
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tok1 := write("source-token", v1.Token)

	s := newRotateSetup(t)
	s.addPlan(t, fmt.Sprintf(`apiVersion: lifeboat.dev/v1alpha1
kind: BackupPlan
metadata: {name: vaultraft}
spec:
  store: local
  keyProvider: local
  retention: 1d
  sources:
    - vault: {address: %s, tokenFile: %s, transitKeys: [ehr], raftSnapshot: true}
`, strconv.Quote(v1.Address), strconv.Quote(tok1)))
	m := s.backupRun(t, "vaultraft")

	v2 := testenv.StartVaultRaft(t)
	tok2 := write("target-token", v2.Token)
	unseal := write("unseal-keys", v1.UnsealKey)
	restore := func(extra ...string) (string, string, int) {
		return run(t, append([]string{"--config", s.config, "restore", "vault", m.Backup, "--raft", "--vault-addr", v2.Address, "--vault-token-file", tok2,
			"--unseal-key-file", unseal, "--source-token-file", tok1, "--key", s.signerPub(t), "--signing-key", s.signingKey}, extra...)...)
	}
	out, errs, code := restore()
	id := regexp.MustCompile(`cluster ID ([0-9a-f-]{36})`).FindStringSubmatch(out)
	if code != ExitOK || id == nil || !strings.Contains(out, "would force-restore") {
		t.Fatalf("dry run: exit %d\n%s\n%s", code, out, errs)
	}
	out, errs, code = restore("--apply", "--confirm", id[1])
	t.Logf("apply:\n%s", out)
	if code != ExitOK || !strings.Contains(out, "ehr") || !strings.Contains(out, "canary decrypts") {
		t.Fatalf("apply: exit %d\n%s\n%s", code, out, errs)
	}
	// The target now answers the source's token with the source's keys.
	var key map[string]any
	v2.Token = v1.Token
	if vaultGet(t, v2, "transit/keys/ehr", &key) != http.StatusOK {
		t.Fatal("the restored Vault does not hold the source's transit key")
	}
}
