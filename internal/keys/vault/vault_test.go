package vault_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/lifeboat-dr/lifeboat/internal/keys"
	"github.com/lifeboat-dr/lifeboat/internal/keys/keystest"
	"github.com/lifeboat-dr/lifeboat/internal/keys/vault"
	"github.com/lifeboat-dr/lifeboat/internal/testenv"
)

// server is a Vault dev server with transit enabled at transit/.
type server struct {
	*testenv.Vault
}

func startServer(t *testing.T) *server {
	t.Helper()
	v := testenv.StartVault(t)
	s := &server{v}
	s.do(t, http.MethodPost, "sys/mounts/transit", map[string]any{"type": "transit"}, nil)
	return s
}

// do calls Vault's HTTP API as root.
func (s *server) do(t *testing.T, method, path string, body, out any) {
	t.Helper()
	if err := s.call(s.Token, method, path, body, out); err != nil {
		t.Fatal(err)
	}
}

func (s *server) call(token, method, path string, body, out any) error {
	var rd *bytes.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, err := http.NewRequest(method, s.Address+"/v1/"+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("X-Vault-Token", token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		var e struct{ Errors []string }
		json.NewDecoder(resp.Body).Decode(&e)
		return fmt.Errorf("%s %s: HTTP %d: %v", method, path, resp.StatusCode, e.Errors)
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	return nil
}

var keySeq atomic.Int64

func (s *server) opts(key string) vault.Options {
	return vault.Options{Address: s.Address, Key: key, Token: s.Token}
}

// newKey creates a fresh derived key and returns a provider for it.
func (s *server) newKey(t *testing.T) *vault.Provider {
	t.Helper()
	name := fmt.Sprintf("kek-%d", keySeq.Add(1))
	p, err := vault.CreateKey(context.Background(), s.opts(name), vault.KeySpec{})
	if err != nil {
		t.Fatalf("CreateKey: %v", err)
	}
	return p
}

func dataKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, 32)
	rand.Read(k)
	return k
}

var aad = []byte("lifeboat.dev/dek/v1\x00backup-1")

func TestConformance(t *testing.T) {
	s := startServer(t)
	keystest.Run(t, keystest.Harness{New: func(t *testing.T) keys.Provider { return s.newKey(t) }})
}

func TestVault(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()

	t.Run("CreateKeyDefaults", func(t *testing.T) {
		p := s.newKey(t)
		var r struct {
			Data struct {
				Type                 string `json:"type"`
				Derived              bool   `json:"derived"`
				Exportable           bool   `json:"exportable"`
				AllowPlaintextBackup bool   `json:"allow_plaintext_backup"`
			}
		}
		s.do(t, http.MethodGet, "transit/keys/"+strings.TrimPrefix(p.KeyName(), "transit/"), nil, &r)
		if r.Data.Type != "aes256-gcm96" || !r.Data.Derived || r.Data.Exportable || r.Data.AllowPlaintextBackup {
			t.Fatalf("created key %+v; want aes256-gcm96, derived, not exportable, no plaintext backup", r.Data)
		}
		if _, err := vault.CreateKey(ctx, s.opts(strings.TrimPrefix(p.KeyName(), "transit/")), vault.KeySpec{}); !errors.Is(err, vault.ErrKeyExists) {
			t.Fatalf("CreateKey of an existing key: got %v, want ErrKeyExists", err)
		}
	})

	t.Run("RefAndCiphertext", func(t *testing.T) {
		p := s.newKey(t)
		w, err := p.Wrap(ctx, dataKey(t), aad)
		if err != nil {
			t.Fatal(err)
		}
		if w.KEK.Provider != "vault" || w.KEK.Key != p.KeyName() || w.KEK.Version != "1" || !strings.HasPrefix(p.KeyName(), "transit/") {
			t.Fatalf("ref %+v", w.KEK)
		}
		if !bytes.HasPrefix(w.Ciphertext, []byte("vault:v1:")) {
			t.Fatalf("ciphertext %q does not start with vault:v1:", w.Ciphertext)
		}
		if _, err := p.Wrap(ctx, dataKey(t), nil); err == nil || !strings.Contains(err.Error(), "non-empty") {
			t.Fatalf("Wrap with an empty context: got %v, want a refusal", err)
		}
	})

	t.Run("Rewrap", func(t *testing.T) {
		p := s.newKey(t)
		dk := dataKey(t)
		w1, err := p.Wrap(ctx, dk, aad)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Rotate(ctx); err != nil {
			t.Fatal(err)
		}
		w2, err := p.Rewrap(ctx, w1, aad)
		if err != nil {
			t.Fatalf("Rewrap: %v", err)
		}
		if w2.KEK.Version != "2" || !bytes.HasPrefix(w2.Ciphertext, []byte("vault:v2:")) {
			t.Fatalf("Rewrap gave %s %q, want version 2", w2.KEK, w2.Ciphertext[:9])
		}
		got, err := p.Unwrap(ctx, w2, aad)
		if err != nil || !bytes.Equal(got, dk) {
			t.Fatalf("Unwrap of rewrapped key: %v (equal %v)", err, bytes.Equal(got, dk))
		}
		// The rewrapped key is still bound to its context.
		if _, err := p.Unwrap(ctx, w2, []byte("lifeboat.dev/dek/v1\x00other")); !errors.Is(err, keys.ErrUnwrap) {
			t.Fatalf("Unwrap of rewrapped key with another context: got %v, want ErrUnwrap", err)
		}
		// Rewrap with the wrong context fails and leaks nothing.
		if _, err := p.Rewrap(ctx, w1, []byte("other")); !errors.Is(err, keys.ErrUnwrap) {
			t.Fatalf("Rewrap with another context: got %v, want ErrUnwrap", err)
		}
		// After retiring v1, the v2 copy still unwraps; the v1 copy does not.
		if err := p.Retire(ctx, "1"); err != nil {
			t.Fatal(err)
		}
		if _, err := p.Unwrap(ctx, w2, aad); err != nil {
			t.Fatalf("Unwrap of rewrapped key after retiring v1: %v", err)
		}
		if _, err := p.Rewrap(ctx, w1, aad); !errors.Is(err, keys.ErrVersionRetired) {
			t.Fatalf("Rewrap of a retired version: got %v, want ErrVersionRetired", err)
		}
	})

	t.Run("RetiredVersionError", func(t *testing.T) {
		p := s.newKey(t)
		dk := dataKey(t)
		var ws []keys.Wrapped
		for i := 0; i < 3; i++ {
			w, err := p.Wrap(ctx, dk, aad)
			if err != nil {
				t.Fatal(err)
			}
			ws = append(ws, w)
			if _, err := p.Rotate(ctx); err != nil {
				t.Fatal(err)
			}
		}
		// Retiring v2 retires v1 too (min_decryption_version = 3).
		if err := p.Retire(ctx, "2"); err != nil {
			t.Fatal(err)
		}
		for _, w := range ws[:2] {
			_, err := p.Unwrap(ctx, w, aad)
			if !errors.Is(err, keys.ErrVersionRetired) {
				t.Fatalf("Unwrap %s: got %v, want ErrVersionRetired", w.KEK, err)
			}
			t.Logf("retired: %v", err)
			for _, want := range []string{"vault", p.KeyName(), w.KEK.String()} {
				if !strings.Contains(err.Error(), want) {
					t.Fatalf("error %q does not name %q", err, want)
				}
			}
		}
		if _, err := p.Unwrap(ctx, ws[2], aad); err != nil {
			t.Fatalf("Unwrap %s: %v", ws[2].KEK, err)
		}
		vs, err := p.Versions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var states []string
		for _, v := range vs {
			states = append(states, fmt.Sprintf("%s:%s:%v", v.Ref.Version, v.State, v.Primary))
		}
		if got, want := strings.Join(states, " "), "1:retired:false 2:retired:false 3:enabled:false 4:enabled:true"; got != want {
			t.Fatalf("Versions %q, want %q", got, want)
		}
		// Retiring an already retired version is a no-op.
		if err := p.Retire(ctx, "1"); err != nil {
			t.Fatalf("Retire of a retired version: %v", err)
		}
		// A version above latest is unknown.
		w := ws[0]
		w.KEK.Version = "9"
		if _, err := p.Unwrap(ctx, w, aad); !errors.Is(err, keys.ErrVersionNotFound) || !strings.Contains(err.Error(), "@9") {
			t.Fatalf("Unwrap of version 9: got %v, want ErrVersionNotFound naming it", err)
		}
	})

	t.Run("NotDerived", func(t *testing.T) {
		s.do(t, http.MethodPost, "transit/keys/plain", map[string]any{"type": "aes256-gcm96"}, nil)
		_, err := vault.New(ctx, s.opts("plain"))
		if !errors.Is(err, vault.ErrNotDerived) || !strings.Contains(err.Error(), "derived=true") || !strings.Contains(err.Error(), "transit/plain") {
			t.Fatalf("New with a non-derived key: got %v, want ErrNotDerived explaining derived=true", err)
		}
		t.Logf("not derived: %v", err)
	})

	t.Run("MissingKey", func(t *testing.T) {
		_, err := vault.New(ctx, s.opts("nope"))
		if !errors.Is(err, keys.ErrKeyNotFound) || !strings.Contains(err.Error(), "transit/nope") {
			t.Fatalf("New with a missing key: got %v, want ErrKeyNotFound naming it", err)
		}
		// A key deleted after New: Wrap must not re-create it.
		p := s.newKey(t)
		name := strings.TrimPrefix(p.KeyName(), "transit/")
		w, err := p.Wrap(ctx, dataKey(t), aad)
		if err != nil {
			t.Fatal(err)
		}
		s.do(t, http.MethodPost, "transit/keys/"+name+"/config", map[string]any{"deletion_allowed": true}, nil)
		s.do(t, http.MethodDelete, "transit/keys/"+name, nil, nil)
		if _, err := p.Wrap(ctx, dataKey(t), aad); !errors.Is(err, keys.ErrKeyNotFound) {
			t.Fatalf("Wrap with a deleted key: got %v, want ErrKeyNotFound", err)
		}
		_, err = p.Unwrap(ctx, w, aad)
		if !errors.Is(err, keys.ErrKeyNotFound) || !strings.Contains(err.Error(), w.KEK.String()) {
			t.Fatalf("Unwrap with a deleted key: got %v, want ErrKeyNotFound naming %s", err, w.KEK)
		}
		if _, err := vault.New(ctx, s.opts(name)); !errors.Is(err, keys.ErrKeyNotFound) {
			t.Fatalf("New after delete: got %v (Wrap may have re-created the key)", err)
		}
	})

	t.Run("AccessDenied", func(t *testing.T) {
		p := s.newKey(t)
		name := strings.TrimPrefix(p.KeyName(), "transit/")
		dk := dataKey(t)
		w, err := p.Wrap(ctx, dk, aad)
		if err != nil {
			t.Fatal(err)
		}
		policy := fmt.Sprintf(`
path "transit/keys/%[1]s" { capabilities = ["read"] }
path "transit/encrypt/%[1]s" { capabilities = ["update"] }
path "transit/decrypt/%[1]s" { capabilities = ["deny"] }
`, name)
		s.do(t, http.MethodPut, "sys/policies/acl/no-decrypt", map[string]any{"policy": policy}, nil)
		var tok struct {
			Auth struct {
				ClientToken string `json:"client_token"`
			} `json:"auth"`
		}
		s.do(t, http.MethodPost, "auth/token/create", map[string]any{"policies": []string{"no-decrypt"}, "no_default_policy": true, "ttl": "10m"}, &tok)
		if tok.Auth.ClientToken == "" {
			t.Fatal("no token")
		}
		// The limited token comes from a file, as a Vault Agent sink would.
		tf := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(tf, []byte(tok.Auth.ClientToken+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		lp, err := vault.New(ctx, vault.Options{Address: s.Address, Key: name, TokenFile: tf})
		if err != nil {
			t.Fatalf("New with the limited token: %v", err)
		}
		if _, err := lp.Wrap(ctx, dataKey(t), aad); err != nil {
			t.Fatalf("Wrap with the limited token: %v", err)
		}
		_, err = lp.Unwrap(ctx, w, aad)
		if !errors.Is(err, keys.ErrAccessDenied) {
			t.Fatalf("Unwrap with a token denied decrypt: got %v, want ErrAccessDenied", err)
		}
		t.Logf("denied: %v", err)
		for _, secret := range []string{tok.Auth.ClientToken, s.Token} {
			if strings.Contains(err.Error(), secret) {
				t.Fatal("error contains a token")
			}
		}
		if !strings.Contains(err.Error(), w.KEK.String()) {
			t.Fatalf("error %q does not name %s", err, w.KEK)
		}
		if _, err := lp.Rotate(ctx); !errors.Is(err, keys.ErrAccessDenied) {
			t.Fatalf("Rotate with the limited token: got %v, want ErrAccessDenied", err)
		}
		// A token without read on the key is refused by New.
		if _, err := vault.New(ctx, vault.Options{Address: s.Address, Key: "other", TokenFile: tf}); !errors.Is(err, keys.ErrAccessDenied) {
			t.Fatalf("New on a key the token cannot read: got %v, want ErrAccessDenied", err)
		}
	})

	t.Run("Options", func(t *testing.T) {
		t.Setenv("VAULT_TOKEN", s.Token)
		if _, err := vault.New(ctx, vault.Options{Address: s.Address, Key: "k"}); err == nil || !strings.Contains(err.Error(), "Token") {
			t.Fatalf("New without a token: got %v, want a refusal (VAULT_TOKEN must not be read)", err)
		}
		if _, err := vault.New(ctx, vault.Options{Address: s.Address, Key: "k", Token: "a", TokenFile: "b"}); err == nil {
			t.Fatal("New with Token and TokenFile succeeded")
		}
		if _, err := vault.New(ctx, vault.Options{Address: s.Address, Key: "a/b", Token: "a"}); err == nil {
			t.Fatal("New with a key name holding a slash succeeded")
		}
		if _, err := vault.New(ctx, vault.Options{Key: "k", Token: "a"}); err == nil {
			t.Fatal("New without an address succeeded")
		}
		// A wrong token is access denied, and the error does not show it.
		_, err := vault.New(ctx, vault.Options{Address: s.Address, Key: "k", Token: "s.not-a-real-token-xyz"})
		if !errors.Is(err, keys.ErrAccessDenied) || strings.Contains(err.Error(), "not-a-real-token") {
			t.Fatalf("New with a bad token: got %v, want ErrAccessDenied without the token", err)
		}
	})

	t.Run("OtherMount", func(t *testing.T) {
		s.do(t, http.MethodPost, "sys/mounts/team/kek", map[string]any{"type": "transit"}, nil)
		o := s.opts("k")
		o.Mount = "/team/kek/"
		p, err := vault.CreateKey(ctx, o, vault.KeySpec{})
		if err != nil {
			t.Fatal(err)
		}
		w, err := p.Wrap(ctx, dataKey(t), aad)
		if err != nil {
			t.Fatal(err)
		}
		if w.KEK.Key != "team/kek/k" {
			t.Fatalf("key %q, want team/kek/k", w.KEK.Key)
		}
		// A reference to another key is refused.
		q := s.newKey(t)
		if _, err := q.Unwrap(ctx, w, aad); !errors.Is(err, keys.ErrKeyNotFound) {
			t.Fatalf("Unwrap of another key's wrap: got %v, want ErrKeyNotFound", err)
		}
	})
}

// TestIgnoresVaultEnvironment: with VAULT_SKIP_VERIFY and a dead proxy in
// the environment, the provider still talks to the server directly (a
// client that read the environment would go through the proxy and fail),
// and TLS verification is not switched off.
func TestIgnoresVaultEnvironment(t *testing.T) {
	s := startServer(t)
	t.Setenv("VAULT_SKIP_VERIFY", "true")
	t.Setenv("VAULT_PROXY_ADDR", "http://127.0.0.1:1")
	t.Setenv("VAULT_HTTP_PROXY", "http://127.0.0.1:1")
	p := s.newKey(t)
	dk := dataKey(t)
	w, err := p.Wrap(context.Background(), dk, []byte("ctx"))
	if err != nil {
		t.Fatalf("Wrap with Vault proxy variables set: %v", err)
	}
	if _, err := p.Unwrap(context.Background(), w, []byte("ctx")); err != nil {
		t.Fatal(err)
	}
}

func TestDefaultTransportVerifiesTLS(t *testing.T) {
	t.Setenv("VAULT_SKIP_VERIFY", "true")
	tr := vault.CleanTransport()
	if tr.TLSClientConfig == nil || tr.TLSClientConfig.InsecureSkipVerify || tr.Proxy != nil {
		t.Fatal("the default transport skips TLS verification or uses a proxy")
	}
}
