package evidence

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestLoadOrCreateSigner(t *testing.T) {
	path := filepath.Join(t.TempDir(), "signing.pem")
	s, err := LoadOrCreateSigner(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Fatalf("key file mode %04o, want 0600", perm)
	}
	data, _ := os.ReadFile(path)
	if !bytes.HasPrefix(data, []byte("-----BEGIN PRIVATE KEY-----\n")) {
		t.Fatalf("key file is not a PEM PRIVATE KEY:\n%s", data)
	}
	if len(s.KeyID()) != 32 || s.KeyID() != KeyID(s.PublicKey()) {
		t.Fatalf("key ID %q", s.KeyID())
	}
	again, err := LoadOrCreateSigner(path)
	if err != nil {
		t.Fatal(err)
	}
	if again.KeyID() != s.KeyID() {
		t.Fatal("second load made a new key")
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(after, data) {
		t.Fatal("key file changed on load")
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*tmp*")); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}

func TestLoadSignerRefusesOpenPermissions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "signing.pem")
	if _, err := LoadOrCreateSigner(path); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []os.FileMode{0o640, 0o604, 0o620, 0o660, 0o644} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		_, err := LoadOrCreateSigner(path)
		if err == nil || !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("mode %04o: error %v, want a refusal", mode, err)
		}
	}
	if err := os.Chmod(path, 0o400); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSigner(path); err != nil {
		t.Errorf("mode 0400: %v", err)
	}
}

func TestLoadSignerRefusesOthers(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadSigner(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: %v", err)
	}
	if _, err := LoadOrCreateSigner(filepath.Join(dir, "missing", "key.pem")); err == nil {
		t.Error("created a key in a missing directory")
	}
	for name, content := range map[string]string{
		"garbage":  "not a key",
		"trailing": "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIB2YzzJ0bz1y2Iv6sX3M9x3wM2qC8SmY4yR1Sgh6CmC8\n-----END PRIVATE KEY-----\nmore",
		"type":     "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
	} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := LoadSigner(p)
		if err == nil {
			t.Errorf("%s: loaded", name)
		} else if strings.Contains(err.Error(), "MC4CAQAw") {
			t.Errorf("%s: error quotes key material: %v", name, err)
		}
	}
}

func TestLoadOrCreateSignerConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "signing.pem")
	ids := make([]string, 8)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Go(func() {
			s, err := LoadOrCreateSigner(path)
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = s.KeyID()
		})
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("concurrent creators got different keys: %v", ids)
		}
	}
}

func TestSignerNeverShowsPrivateKey(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(nil)
	s, err := NewSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("x", "signer", s)
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("x", "signer", s)
	out := fmt.Sprintf("%v %+v %#v %s", s, s, s, s) + logged.String()
	for _, secret := range []string{
		base64.StdEncoding.EncodeToString(priv.Seed()),
		fmt.Sprint([]byte(priv.Seed())[:8]),
		fmt.Sprintf("%x", priv.Seed()[:8]),
	} {
		if strings.Contains(out, secret) {
			t.Fatalf("private key shown: %s", out)
		}
	}
	if !strings.Contains(out, s.KeyID()) {
		t.Fatalf("key ID not shown: %s", out)
	}
}

func TestPublicKeyFiles(t *testing.T) {
	raw, _, _ := ed25519.GenerateKey(nil)
	pub := Ed25519Key(raw)
	pemData, err := MarshalPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{
		"pem":    pemData,
		"base64": []byte(base64.StdEncoding.EncodeToString(raw) + "\n"),
	} {
		got, err := ParsePublicKey(data)
		if err != nil || !got.Equal(pub) {
			t.Errorf("%s: %v", name, err)
		}
	}
	for name, data := range map[string]string{
		"short":        base64.StdEncoding.EncodeToString(raw[:31]),
		"padding bits": flipUnusedBit(base64.StdEncoding.EncodeToString(raw)),
		"not base64":   "***",
		"text before":  "junk\n" + string(pemData),
		"private":      "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
	} {
		if _, err := ParsePublicKey([]byte(data)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	path := filepath.Join(t.TempDir(), "signer.pub")
	if err := os.WriteFile(path, pemData, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadPublicKeyFile(path); err != nil || !got.Equal(pub) {
		t.Fatalf("ReadPublicKeyFile: %v", err)
	}
}

// flipUnusedBit sets the lowest bit of the last base64 character before
// the padding: an unused bit for a 32-byte value, so a lenient decoder
// would return the same bytes.
func flipUnusedBit(s string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	i := strings.TrimRight(s, "=")
	last := len(i) - 1
	return s[:last] + string(alphabet[strings.IndexByte(alphabet, s[last])^1]) + s[last+1:]
}
