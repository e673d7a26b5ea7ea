package wire_test

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/keys/awskms"
	"github.com/lifeboat-dr/lifeboat/internal/keys/vault"
	"github.com/lifeboat-dr/lifeboat/internal/testenv"
	"github.com/lifeboat-dr/lifeboat/internal/wire"
)

// osEnv wires with this process's environment, as the CLI does.
func osEnv() *wire.Env { return &wire.Env{Getenv: os.Getenv} }

// TestOpenKeyProviders opens Vault and AWS KMS providers the way the CLI
// does, from KeyProvider objects, against the real servers, and wraps and
// unwraps a key through each.
func TestOpenKeyProviders(t *testing.T) {
	ctx := context.Background()
	dek := bytes.Repeat([]byte{7}, 32)
	aad := []byte("lifeboat.dev/dek/v1\x00b1")

	t.Run("vault", func(t *testing.T) {
		v := testenv.StartVault(t)
		req, _ := http.NewRequest(http.MethodPost, v.Address+"/v1/sys/mounts/transit", strings.NewReader(`{"type":"transit"}`))
		req.Header.Set("X-Vault-Token", v.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode/100 != 2 {
			t.Fatalf("enable transit: %v %v", resp, err)
		}
		resp.Body.Close()
		tokenFile := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(tokenFile, []byte(v.Token), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := vault.CreateKey(ctx, vault.Options{Address: v.Address, Key: "lifeboat", TokenFile: tokenFile}, vault.KeySpec{}); err != nil {
			t.Fatal(err)
		}
		kp := &config.KeyProvider{Metadata: config.ObjectMeta{Name: "vault-transit"}, Spec: config.KeyProviderSpec{
			Type: config.KeyProviderVault, Address: v.Address, TransitKey: "lifeboat", TokenFile: tokenFile}}
		roundTrip(t, kp, dek, aad)

		kp.Spec.TokenFile = ""
		t.Setenv("VAULT_TOKEN", "")
		if _, err := osEnv().OpenKeys(ctx, kp); err == nil || !strings.Contains(err.Error(), "VAULT_TOKEN") {
			t.Fatalf("no token anywhere: got %v, want an error naming VAULT_TOKEN", err)
		}
		t.Setenv("VAULT_TOKEN", v.Token)
		roundTrip(t, kp, dek, aad)

		// Without spec.address, VAULT_ADDR.
		kp.Spec.Address = ""
		t.Setenv("VAULT_ADDR", "")
		if _, err := osEnv().OpenKeys(ctx, kp); err == nil || !strings.Contains(err.Error(), "VAULT_ADDR") {
			t.Fatalf("no address anywhere: got %v, want an error naming VAULT_ADDR", err)
		}
		t.Setenv("VAULT_ADDR", v.Address)
		roundTrip(t, kp, dek, aad)
	})

	t.Run("awskms", func(t *testing.T) {
		k := testenv.StartKMS(t)
		// The CLI uses the SDK's default credential chain.
		t.Setenv("AWS_ACCESS_KEY_ID", "lifeboat-test")
		t.Setenv("AWS_SECRET_ACCESS_KEY", "lifeboat-test-secret")
		t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
		t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
		kp := &config.KeyProvider{Metadata: config.ObjectMeta{Name: "kms"}, Spec: config.KeyProviderSpec{
			Type: config.KeyProviderAWSKMS, Alias: "alias/lifeboat-cli", Region: k.Region, Endpoint: k.Endpoint}}
		p, err := osEnv().OpenKeys(ctx, kp)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.(*awskms.Provider).Bootstrap(ctx); err != nil {
			t.Fatal(err)
		}
		roundTrip(t, kp, dek, aad)
	})
}

func roundTrip(t *testing.T, kp *config.KeyProvider, dek, aad []byte) {
	t.Helper()
	p, err := osEnv().OpenKeys(context.Background(), kp)
	if err != nil {
		t.Fatalf("open %s: %v", kp.Metadata.Name, err)
	}
	w, err := p.Wrap(context.Background(), dek, aad)
	if err != nil {
		t.Fatalf("wrap with %s: %v", kp.Metadata.Name, err)
	}
	got, err := p.Unwrap(context.Background(), w, aad)
	if err != nil || !bytes.Equal(got, dek) {
		t.Fatalf("unwrap with %s (%s): %v", kp.Metadata.Name, w.KEK, err)
	}
}
