package vault_test

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/keys/vault"
	"github.com/lifeboat-dr/lifeboat/internal/store/fs"
)

// TestSigner: evidence signed by an ed25519 transit key in a real Vault.
// The private key never leaves Vault; records appended with the signer
// verify under the public key Vault exports (base64, as `evidence verify
// --key` takes it) and under no other key; a key of another type is
// refused, naming it.
func TestSigner(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	s.do(t, http.MethodPost, "transit/keys/lifeboat-evidence", map[string]any{"type": "ed25519"}, nil)
	signer, err := vault.NewSigner(ctx, s.opts("lifeboat-evidence"))
	if err != nil {
		t.Fatal(err)
	}
	var key struct {
		Data struct {
			Keys map[string]struct {
				PublicKey string `json:"public_key"`
			} `json:"keys"`
		} `json:"data"`
	}
	s.do(t, http.MethodGet, "transit/keys/lifeboat-evidence", nil, &key)
	exported, err := evidence.ParsePublicKey([]byte(key.Data.Keys["1"].PublicKey))
	if err != nil {
		t.Fatalf("Vault's exported public key does not parse as a --key file: %v", err)
	}
	if !exported.Equal(signer.PublicKey()) {
		t.Fatal("the signer's public key is not the one Vault exports")
	}

	st, err := fs.Open(ctx, fs.Options{Root: filepath.Join(t.TempDir(), "store")})
	if err != nil {
		t.Fatal(err)
	}
	log := evidence.NewLog(st, signer, nil)
	for _, id := range []string{"a", "b", "c"} {
		if _, err := log.Append(ctx, evidence.Record{Kind: evidence.KindBackup, ID: id, Outcome: evidence.OutcomeSuccess,
			Subject: map[string]any{"plan": "p"}, HIPAA: []string{}}); err != nil {
			t.Fatalf("append with the Vault signer: %v", err)
		}
	}
	res, err := evidence.NewLog(st, nil, nil).Verify(ctx, exported)
	if err != nil || res.Records != 3 || len(res.Signers) != 1 || res.Signers[0] != signer.KeyID() {
		t.Fatalf("verify under Vault's public key: %+v %v", res, err)
	}
	other, _ := evidence.ParsePublicKey([]byte("11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="))
	if _, err := evidence.NewLog(st, nil, nil).Verify(ctx, other); err == nil {
		t.Fatal("the log verifies under a key that did not sign it")
	}

	s.do(t, http.MethodPost, "transit/keys/not-for-signing", map[string]any{"type": "aes256-gcm96"}, nil)
	if _, err := vault.NewSigner(ctx, s.opts("not-for-signing")); err == nil || !strings.Contains(err.Error(), "aes256-gcm96") {
		t.Fatalf("NewSigner with an AES key = %v, want a refusal naming its type", err)
	}
}
