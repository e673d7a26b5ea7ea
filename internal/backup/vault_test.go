package backup_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lifeboat-dr/lifeboat/internal/backup"
	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/config"
	scratchvault "github.com/lifeboat-dr/lifeboat/internal/scratch/vault"
	sourcevault "github.com/lifeboat-dr/lifeboat/internal/source/vault"
	"github.com/lifeboat-dr/lifeboat/internal/testenv"
)

// vaultCall makes one Vault API request with token and decodes the answer
// into out (when not nil).
func vaultCall(t *testing.T, ctx context.Context, addr, token, method, path string, body, out any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, addr+"/v1/"+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Vault-Token", token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("%s %s: %s: %s", method, path, resp.Status, rb)
	}
	if out != nil {
		if err := json.Unmarshal(rb, out); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
	}
}

// Secret values seeded into Vault; none may appear in logs or errors.
var vaultSecretValues = []string{"db-pass-7c1e", "api-token-99ab", "deep-value-x1", "outside-value"}

// seedVault mounts transit and creates the keys and KV v2 secrets the
// tests back up: ehr-derived (derived) and ehr-plain (rotated once), both
// exportable with plaintext backup; locked, not exportable; KV v2 secrets
// under secret/ehr at several depths, one of them soft-deleted, and one
// outside; and a KV version 1 mount kv1.
func seedVault(t *testing.T, ctx context.Context, v *testenv.Vault) {
	t.Helper()
	call := func(method, path string, body any) { vaultCall(t, ctx, v.Address, v.Token, method, path, body, nil) }
	call(http.MethodPost, "sys/mounts/transit", map[string]any{"type": "transit"})
	call(http.MethodPost, "transit/keys/ehr-derived", map[string]any{"type": "aes256-gcm96", "derived": true, "exportable": true, "allow_plaintext_backup": true})
	call(http.MethodPost, "transit/keys/ehr-plain", map[string]any{"type": "aes256-gcm96", "exportable": true, "allow_plaintext_backup": true})
	call(http.MethodPost, "transit/keys/ehr-plain/rotate", map[string]any{})
	call(http.MethodPost, "transit/keys/locked", map[string]any{"type": "aes256-gcm96"})
	for p, val := range map[string]string{
		"ehr/db": vaultSecretValues[0], "ehr/app/api": vaultSecretValues[1], "ehr/app/deep/x": vaultSecretValues[2],
		"other/y": vaultSecretValues[3], "ehr/gone": "gone-value",
	} {
		call(http.MethodPost, "secret/data/"+p, map[string]any{"data": map[string]string{"value": val}})
	}
	call(http.MethodPost, "secret/data/ehr/db", map[string]any{"data": map[string]string{"value": vaultSecretValues[0], "user": "ehr"}})
	call(http.MethodDelete, "secret/data/ehr/gone", nil)
	call(http.MethodPost, "sys/mounts/kv1", map[string]any{"type": "kv", "options": map[string]string{"version": "1"}})
}

func vaultSource(v *testenv.Vault, s config.VaultSource) config.Source {
	s.Address = v.Address
	return config.Source{Vault: &s}
}

// policyToken writes the ACL policy name and returns a token holding it
// alone.
func policyToken(t *testing.T, ctx context.Context, v *testenv.Vault, name, policy string) string {
	t.Helper()
	vaultCall(t, ctx, v.Address, v.Token, http.MethodPut, "sys/policies/acl/"+name, map[string]any{"policy": policy}, nil)
	var tok struct {
		Auth struct {
			ClientToken string `json:"client_token"`
		} `json:"auth"`
	}
	vaultCall(t, ctx, v.Address, v.Token, http.MethodPost, "auth/token/create", map[string]any{"policies": []string{name}, "no_default_policy": true}, &tok)
	return tok.Auth.ClientToken
}

// TestVaultSource backs up transit keys (one derived, one rotated) and KV
// v2 secrets from a real Vault dev server, checks both artifacts, restores
// the keys into a scratch Vault and decrypts the canaries, and checks that
// tampered canaries fail naming the key.
func TestVaultSource(t *testing.T) {
	ctx := testContext(t)
	v := testenv.StartVault(t)
	seedVault(t, ctx, v)
	f := newFixture(t)
	var logs bytes.Buffer
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("  "+v.Token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := plan("vault-keys", vaultSource(v, config.VaultSource{
		TokenFile:   tokenFile,
		TransitKeys: []string{"ehr-plain", "ehr-derived"},
		KVPaths:     []string{"secret/ehr", "secret/other/y"},
	}))
	m, err := backup.Run(ctx, backup.Options{
		Plan: p, Store: f.st, Keys: f.keyring, Version: "test", VaultToken: "not-this-one",
		Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatalf("Run: %v\nlogs:\n%s", err, logs.String())
	}
	if m.Status != catalog.StatusComplete || len(m.Artifacts) != 2 || m.Vault == nil {
		t.Fatalf("manifest: %+v", m)
	}
	for _, a := range m.Artifacts {
		if a.Source != catalog.SourceVault {
			t.Errorf("artifact %s: source %q", a.Name, a.Source)
		}
	}
	vs := m.Vault
	if vs.Address != v.Address || vs.TransitMount != "transit" || vs.RaftSnapshot || len(vs.TransitKeys) != 2 {
		t.Fatalf("vault section: %+v", vs)
	}
	plain, derived := vs.TransitKeys[0], vs.TransitKeys[1]
	if plain.Name != "ehr-plain" || plain.LatestVersion != 2 || plain.Derived || plain.CanaryContext != "" || !strings.HasPrefix(plain.CanaryCiphertext, "vault:v2:") || plain.Type != "aes256-gcm96" {
		t.Errorf("ehr-plain: %+v", plain)
	}
	wantCtx := sourcevault.CanaryContext(m.Backup, "ehr-derived")
	if derived.Name != "ehr-derived" || derived.LatestVersion != 1 || !derived.Derived || !strings.HasPrefix(derived.CanaryCiphertext, "vault:v1:") ||
		derived.CanaryContext == "" || !bytes.Contains(wantCtx, []byte(m.Backup)) {
		t.Errorf("ehr-derived: %+v", derived)
	}
	if got := fmt.Sprintf("%+v", vs.KV); got != "[{Path:secret/ehr Secrets:3} {Path:secret/other/y Secrets:1}]" {
		t.Errorf("kv: %s", got)
	}
	// The manifest as stored reads back with the vault section.
	if back, err := catalog.Read(ctx, f.st, m.Backup); err != nil || back.Vault == nil || len(back.Vault.TransitKeys) != 2 {
		t.Fatalf("read manifest back: %v %+v", err, back.Vault)
	}

	// vault-transit.json holds both keys' backups.
	art, err := sourcevault.ReadTransitArtifact(bytes.NewReader(decrypt(t, f, m, catalog.ArtifactVaultTransit)))
	if err != nil {
		t.Fatal(err)
	}
	defer art.Destroy()
	if art.Address != v.Address || art.Mount != "transit" || len(art.Keys) != 2 || art.Keys["ehr-plain"].LatestVersion != 2 || art.Keys["ehr-derived"].LatestVersion != 1 {
		t.Fatalf("transit artifact: address %s mount %s keys %d", art.Address, art.Mount, len(art.Keys))
	}
	for name, k := range art.Keys {
		if bytes.Contains(logs.Bytes(), bytes.Trim(k.Backup, `"`)) {
			t.Errorf("logs hold key %s's backup", name)
		}
	}

	// vault-kv.json holds the current versions under secret/ehr only.
	var kv struct {
		Format  string `json:"format"`
		Address string `json:"address"`
		Paths   []struct {
			Path, Mount string
			Count       int
			Secrets     []struct {
				Path        string            `json:"path"`
				Version     int               `json:"version"`
				CreatedTime string            `json:"createdTime"`
				Data        map[string]string `json:"data"`
				Deleted     bool              `json:"deleted"`
			} `json:"secrets"`
		} `json:"paths"`
	}
	kvb := decrypt(t, f, m, catalog.ArtifactVaultKV)
	dec := json.NewDecoder(bytes.NewReader(kvb))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&kv); err != nil {
		t.Fatalf("vault-kv.json: %v\n%s", err, kvb)
	}
	if kv.Format != sourcevault.KVFormat || kv.Address != v.Address || len(kv.Paths) != 2 || kv.Paths[0].Path != "secret/ehr" || kv.Paths[0].Mount != "secret" || kv.Paths[0].Count != 3 {
		t.Fatalf("vault-kv.json: %s", kvb)
	}
	if p1 := kv.Paths[1]; p1.Path != "secret/other/y" || p1.Count != 1 || len(p1.Secrets) != 1 || p1.Secrets[0].Path != "other/y" || p1.Secrets[0].Data["value"] != "outside-value" {
		t.Errorf("a path that is a secret: %+v", p1)
	}
	var got []string
	for _, s := range kv.Paths[0].Secrets {
		got = append(got, fmt.Sprintf("%s v%d %v deleted=%v", s.Path, s.Version, s.Data, s.Deleted))
		if s.CreatedTime == "" {
			t.Errorf("secret %s: no createdTime", s.Path)
		}
	}
	want := []string{
		"ehr/app/api v1 map[value:api-token-99ab] deleted=false",
		"ehr/app/deep/x v1 map[value:deep-value-x1] deleted=false",
		"ehr/db v2 map[user:ehr value:db-pass-7c1e] deleted=false",
		"ehr/gone v1 map[] deleted=true",
	}
	if !slices.Equal(got, want) {
		t.Errorf("secrets:\n got %q\nwant %q", got, want)
	}
	for _, s := range append(slices.Clone(vaultSecretValues), v.Token) {
		if strings.Contains(logs.String(), s) {
			t.Errorf("logs hold a secret %q", s)
		}
	}
	// The logs name the plan's KV paths and counts, never a secret's path
	// under them (docs/format.md §6.3).
	for _, s := range []string{"ehr/app", "ehr/db", "ehr/gone", "deep/x"} {
		if strings.Contains(logs.String(), s) {
			t.Errorf("logs hold the secret path %q", s)
		}
	}
	if !strings.Contains(logs.String(), `"path":"secret/ehr"`) {
		t.Errorf("logs do not name the plan's KV path:\n%s", logs.String())
	}

	// Restore the keys into a fresh scratch Vault and decrypt the canaries.
	bin := testenv.Binary(t, "vault")
	scratch := startScratchVault(t, ctx, bin)
	for _, r := range scratch.VerifyCanaries(ctx, art, vs.TransitKeys) {
		if r.Err != nil {
			t.Errorf("key %s: %v", r.Name, r.Err)
		}
		if want := map[string]int{"ehr-plain": 2, "ehr-derived": 1}[r.Name]; r.Version != want {
			t.Errorf("key %s restored at version %d, want %d", r.Name, r.Version, want)
		}
	}

	// A key that rotated between lifeboat reading its configuration and
	// taking its backup (as auto_rotate_period may do) restores with a
	// later version than recorded, and passes.
	rotated := slices.Clone(vs.TransitKeys[:1])
	rotated[0].LatestVersion = 1
	artRotated := sourcevault.TransitArtifact{Format: art.Format, Keys: map[string]sourcevault.TransitKeyBackup{
		"ehr-plain": {LatestVersion: 1, Backup: slices.Clone(art.Keys["ehr-plain"].Backup)},
	}}
	if res := startScratchVault(t, ctx, bin).VerifyCanaries(ctx, artRotated, rotated); len(res) != 1 || res[0].Err != nil || res[0].Version != 2 {
		t.Errorf("key rotated before its backup: %+v", res)
	}
	artRotated.Destroy()

	// Tampered canaries fail, naming the key: a wrong digest, a
	// ciphertext of another key, a wrong context.
	tampered := slices.Clone(vs.TransitKeys)
	tampered[0].CanarySHA256 = strings.Repeat("0", 64)
	tampered[1].CanaryCiphertext = plain.CanaryCiphertext
	scratch2 := startScratchVault(t, ctx, bin)
	res := scratch2.VerifyCanaries(ctx, art, tampered)
	if len(res) != 2 || !errors.Is(res[0].Err, scratchvault.ErrCanaryMismatch) || !strings.Contains(res[0].Err.Error(), "ehr-plain") {
		t.Errorf("wrong digest: %+v", res)
	}
	if len(res) != 2 || res[1].Err == nil || !strings.Contains(res[1].Err.Error(), "ehr-derived") {
		t.Errorf("ciphertext of another key: %+v", res)
	}
	wrongCtx := slices.Clone(vs.TransitKeys[1:])
	wrongCtx[0].CanaryContext = "b3RoZXI="
	if _, err := scratch2.CanaryDigest(ctx, "ehr-derived", wrongCtx[0].CanaryCiphertext, wrongCtx[0].CanaryContext); err == nil || !strings.Contains(err.Error(), "ehr-derived") {
		t.Errorf("wrong context: %v", err)
	}
	// A key whose backup Vault will not restore, and a key missing from
	// the artifact, fail by name.
	art.Keys["ehr-plain"] = sourcevault.TransitKeyBackup{LatestVersion: 2, Backup: json.RawMessage(`"bm90IGEga2V5IGJhY2t1cA=="`)}
	delete(art.Keys, "ehr-derived")
	res = startScratchVault(t, ctx, bin).VerifyCanaries(ctx, art, vs.TransitKeys)
	if len(res) != 2 || res[0].Err == nil || !strings.Contains(res[0].Err.Error(), "restore transit key ehr-plain: Vault answered") {
		t.Errorf("unrestorable key: %+v", res)
	}
	if len(res) != 2 || res[1].Err == nil || !strings.Contains(res[1].Err.Error(), "ehr-derived: not in vault-transit.json") {
		t.Errorf("missing key: %+v", res)
	}
	t.Logf("unrestorable: %v", res[0].Err)
}

func startScratchVault(t *testing.T, ctx context.Context, bin string) *scratchvault.Server {
	t.Helper()
	s, err := scratchvault.Start(ctx, scratchvault.Options{Binary: bin, TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// TestVaultSourceRefusals checks the errors of a vault source: a key that
// is not exportable, a KV version 1 mount, a path on no mount, a token
// whose policy lacks access (for a transit key and for a KV path), a raft
// snapshot of a dev server, and no token. Each names what it is about and
// nothing is committed.
func TestVaultSourceRefusals(t *testing.T) {
	ctx := testContext(t)
	v := testenv.StartVault(t)
	seedVault(t, ctx, v)
	// A token that may read keys and encrypt, but not back up or read KV.
	tok := policyToken(t, ctx, v, "partial", `
path "transit/keys/*"    { capabilities = ["read"] }
path "transit/encrypt/*" { capabilities = ["update"] }
`)

	// A token that may list secret/ehr but read only one secret in it.
	tok2 := policyToken(t, ctx, v, "kvlist", `
path "secret/metadata/ehr"   { capabilities = ["list", "read"] }
path "secret/metadata/ehr/*" { capabilities = ["list", "read"] }
path "secret/data/ehr/db"    { capabilities = ["read"] }
`)

	for _, tc := range []struct {
		name   string
		src    config.VaultSource
		token  string
		is     error
		errHas []string
	}{
		{"not exportable", config.VaultSource{TransitKeys: []string{"ehr-plain", "locked"}}, v.Token, sourcevault.ErrNotBackupable,
			[]string{"transit key transit/locked", "exportable and allow_plaintext_backup not set", "vault write transit/keys/locked/config exportable=true allow_plaintext_backup=true"}},
		{"missing key", config.VaultSource{TransitKeys: []string{"nope"}}, v.Token, nil, []string{"transit key transit/nope", "no such key"}},
		{"kv v1", config.VaultSource{KVPaths: []string{"kv1/app"}}, v.Token, sourcevault.ErrNotKV2, []string{"kv path kv1/app", "KV version 1"}},
		{"no mount", config.VaultSource{KVPaths: []string{"nomount/app"}}, v.Token, sourcevault.ErrNotKV2, []string{"kv path nomount/app", "no secrets engine is mounted"}},
		{"transit denied", config.VaultSource{TransitKeys: []string{"ehr-plain"}}, tok, sourcevault.ErrPermissionDenied,
			[]string{"back up transit key transit/ehr-plain", "permission denied"}},
		{"kv denied", config.VaultSource{KVPaths: []string{"secret/ehr"}}, tok, sourcevault.ErrPermissionDenied,
			[]string{"kv path secret/ehr", "permission denied"}},
		{"kv secret denied", config.VaultSource{KVPaths: []string{"secret/ehr"}}, tok2, sourcevault.ErrPermissionDenied,
			[]string{"kv path secret/ehr: read secret " + sourcevault.SecretRef("secret/ehr/app/api"), "permission denied"}},
		{"raft on inmem", config.VaultSource{RaftSnapshot: true}, v.Token, sourcevault.ErrNotRaft,
			[]string{"raft snapshot", "does not use integrated storage", "sys/storage/raft/configuration"}},
		{"no token", config.VaultSource{TransitKeys: []string{"ehr-plain"}}, "", nil, []string{"no token", "VAULT_TOKEN"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			var logs bytes.Buffer
			_, err := backup.Run(ctx, backup.Options{
				Plan: plan("vault-keys", vaultSource(v, tc.src)), Store: f.st, Keys: f.keyring, VaultToken: tc.token,
				Logger: slog.New(slog.NewJSONHandler(&logs, nil)),
			})
			t.Logf("error: %v", err)
			var re *backup.RunError
			if !errors.As(err, &re) || re.Step != config.SourceVault {
				t.Fatalf("err %v", err)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("err %v: not %v", err, tc.is)
			}
			for _, s := range tc.errHas {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("err %q does not say %q", err, s)
				}
			}
			if !strings.Contains(err.Error(), v.Address) && tc.token != "" {
				t.Errorf("err %q does not name the server", err)
			}
			for _, s := range []string{v.Token, tok, tok2} {
				if strings.Contains(err.Error(), s) || strings.Contains(logs.String(), s) {
					t.Errorf("a token is in the error or logs")
				}
			}
			for _, k := range objects(t, f.st) {
				if strings.HasSuffix(k, "manifest.json") {
					t.Errorf("committed %s", k)
				}
			}
		})
	}
}

// TestVaultRaftSnapshot streams a raft snapshot from a Vault with
// integrated storage and checks that the artifact is the gzip-compressed
// tar Vault sends, complete.
func TestVaultRaftSnapshot(t *testing.T) {
	ctx := testContext(t)
	v := testenv.StartVaultRaft(t)
	vaultCall(t, ctx, v.Address, v.Token, http.MethodPost, "sys/mounts/transit", map[string]any{"type": "transit"}, nil)
	vaultCall(t, ctx, v.Address, v.Token, http.MethodPost, "transit/keys/in-raft", map[string]any{"exportable": true, "allow_plaintext_backup": true}, nil)
	// The policy docs/vault.md gives.
	tok := policyToken(t, ctx, v, "lifeboat", `
path "transit/keys/+"    { capabilities = ["read"] }
path "transit/backup/+"  { capabilities = ["read"] }
path "transit/encrypt/+" { capabilities = ["update"] }
path "sys/storage/raft/configuration" { capabilities = ["read"] }
path "sys/storage/raft/snapshot"      { capabilities = ["read"] }
`)
	f := newFixture(t)
	m, err := backup.Run(ctx, backup.Options{
		Plan:  plan("vault-raft", vaultSource(v, config.VaultSource{RaftSnapshot: true, TransitKeys: []string{"in-raft"}})),
		Store: f.st, Keys: f.keyring, VaultToken: tok,
	})
	if err != nil {
		t.Fatal(err)
	}
	if m.Vault == nil || !m.Vault.RaftSnapshot || len(m.Vault.TransitKeys) != 1 {
		t.Fatalf("vault section: %+v", m.Vault)
	}
	a, ok := m.Artifact(catalog.ArtifactVaultRaft)
	if !ok || a.PlaintextSize == 0 {
		t.Fatalf("raft artifact: %+v", a)
	}
	snap := decrypt(t, f, m, catalog.ArtifactVaultRaft)
	zr, err := gzip.NewReader(bytes.NewReader(snap))
	if err != nil {
		t.Fatalf("snapshot is not gzip: %v", err)
	}
	tr := tar.NewReader(zr)
	var members []string
	sizes := map[string]int64{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		members = append(members, h.Name)
		n, _ := io.Copy(io.Discard, tr)
		sizes[h.Name] = n
	}
	for _, want := range []string{"meta.json", "state.bin", "SHA256SUMS", "SHA256SUMS.sealed"} {
		if sizes[want] == 0 {
			t.Errorf("snapshot tar: member %s missing or empty (members %v)", want, members)
		}
	}
	if members[len(members)-1] != "SHA256SUMS.sealed" {
		t.Errorf("snapshot tar ends with %s", members[len(members)-1])
	}
}

// TestVaultSourceDocumentedPolicy backs up transit keys and KV secrets
// with a token holding only the policy docs/vault.md gives.
func TestVaultSourceDocumentedPolicy(t *testing.T) {
	ctx := testContext(t)
	v := testenv.StartVault(t)
	seedVault(t, ctx, v)
	tok := policyToken(t, ctx, v, "lifeboat", `
path "transit/keys/+"    { capabilities = ["read"] }
path "transit/backup/+"  { capabilities = ["read"] }
path "transit/encrypt/+" { capabilities = ["update"] }
path "secret/metadata/ehr"    { capabilities = ["list", "read"] }
path "secret/metadata/ehr/*"  { capabilities = ["list", "read"] }
path "secret/data/ehr"        { capabilities = ["read"] }
path "secret/data/ehr/*"      { capabilities = ["read"] }
`)
	f := newFixture(t)
	m, err := backup.Run(ctx, backup.Options{
		Plan:  plan("vault-keys", vaultSource(v, config.VaultSource{TransitKeys: []string{"ehr-derived"}, KVPaths: []string{"secret/ehr"}})),
		Store: f.st, Keys: f.keyring, VaultToken: tok,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Vault.TransitKeys) != 1 || len(m.Vault.KV) != 1 || m.Vault.KV[0].Secrets != 3 {
		t.Fatalf("vault section: %+v", m.Vault)
	}
}
