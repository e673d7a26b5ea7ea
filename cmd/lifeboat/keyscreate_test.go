package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/job"
	"github.com/lifeboat-dr/lifeboat/internal/testenv"
)

// kmsEnv points the SDK's default credential chain at test credentials
// (local-kms checks no signatures) and returns a raw KMS client.
func kmsEnv(t *testing.T, k *testenv.KMS) *kms.Client {
	t.Helper()
	t.Setenv("AWS_ACCESS_KEY_ID", "lifeboat-test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "lifeboat-test-secret")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	return kms.New(kms.Options{Region: k.Region, BaseEndpoint: aws.String(k.Endpoint),
		Credentials: credentials.NewStaticCredentialsProvider("lifeboat-test", "lifeboat-test-secret", "")})
}

// vaultDo calls Vault's HTTP API with token and decodes the answer into
// out (when not nil).
func vaultDo(t *testing.T, v *testenv.Vault, token, method, path string, body, out any) {
	t.Helper()
	var rd *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, err := http.NewRequest(method, v.Address+"/v1/"+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Vault-Token", token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("vault %s %s: %s", method, path, resp.Status)
	}
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatal(err)
		}
	}
}

// vaultToken creates a token with a policy of the given HCL rules.
func vaultToken(t *testing.T, v *testenv.Vault, name, rules string) string {
	t.Helper()
	vaultDo(t, v, v.Token, http.MethodPut, "sys/policies/acl/"+name, map[string]any{"policy": rules}, nil)
	var tok struct {
		Auth struct {
			ClientToken string `json:"client_token"`
		} `json:"auth"`
	}
	vaultDo(t, v, v.Token, http.MethodPost, "auth/token/create", map[string]any{"policies": []string{name}, "no_default_policy": true, "ttl": "10m"}, &tok)
	if tok.Auth.ClientToken == "" {
		t.Fatal("no token")
	}
	return tok.Auth.ClientToken
}

func startTransit(t *testing.T) (*testenv.Vault, string) {
	t.Helper()
	v := testenv.StartVault(t)
	vaultDo(t, v, v.Token, http.MethodPost, "sys/mounts/transit", map[string]any{"type": "transit"}, nil)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(v.Token), 0o600); err != nil {
		t.Fatal(err)
	}
	return v, tokenFile
}

func keysCreate(t *testing.T, config, provider string) (keysCreateResult, string, int) {
	t.Helper()
	out, errs, code := run(t, "--config", config, "-o", "json", "keys", "create", provider)
	var res keysCreateResult
	if code == ExitOK {
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("keys create -o json: %v\n%s", err, out)
		}
	}
	return res, errs, code
}

// TestKeysCreate: `keys create` makes the KEK of a local, an AWS KMS
// (alias) and a Vault transit KeyProvider, each usable for a backup, and
// refuses, changing nothing, when it exists already.
func TestKeysCreate(t *testing.T) {
	t.Run("local", func(t *testing.T) {
		s := newRotateSetupWith(t, "")
		res, errs, code := keysCreate(t, s.config, "local")
		if code != ExitOK || res.Type != "local" || res.Key != "lifeboat" || res.Primary != "1" {
			t.Fatalf("keys create local: exit %d %+v\n%s", code, res, errs)
		}
		before, err := os.ReadFile(s.keyring)
		if err != nil {
			t.Fatal(err)
		}
		_, errs, code = keysCreate(t, s.config, "local")
		if code != ExitError || !strings.Contains(errs, "already exists") {
			t.Fatalf("second keys create local: exit %d\n%s", code, errs)
		}
		if after, _ := os.ReadFile(s.keyring); !bytes.Equal(before, after) {
			t.Fatal("a refused create changed the keyring")
		}
		s.backups(t, 1)
	})

	t.Run("awskms", func(t *testing.T) {
		k := testenv.StartKMS(t)
		kmsEnv(t, k)
		alias := "alias/lifeboat-created"
		s := newRotateSetupWith(t, fmt.Sprintf("{type: awskms, alias: %s, region: %s, endpoint: %s}", alias, k.Region, strconv.Quote(k.Endpoint)))
		res, errs, code := keysCreate(t, s.config, "local")
		if code != ExitOK || res.Type != "awskms" || res.Key != alias || res.Primary == "" {
			t.Fatalf("keys create (awskms): exit %d %+v\n%s", code, res, errs)
		}
		_, errs, code = keysCreate(t, s.config, "local")
		if code != ExitError || !strings.Contains(errs, "already exists") || !strings.Contains(errs, res.Primary) {
			t.Fatalf("second keys create (awskms): exit %d\n%s", code, errs)
		}
		ms := s.backups(t, 1)
		st := s.store(t, true)
		m, err := catalog.Read(context.Background(), st, ms[0])
		if err != nil {
			t.Fatal(err)
		}
		if m.KEK.Provider != "awskms" || m.KEK.Key != alias || m.KEK.Version != res.Primary {
			t.Fatalf("backup wrapped under %s, want awskms:%s@%s", m.KEK, alias, res.Primary)
		}
		// One version: the refused second create made no key.
		out, errs, code := run(t, "--config", s.config, "-o", "json", "keys", "status", "local")
		var ks []job.KeyStatus
		if code != ExitOK || json.Unmarshal([]byte(out), &ks) != nil || len(ks) != 1 || len(ks[0].Versions) != 1 {
			t.Fatalf("keys status after create: exit %d\n%s\n%s", code, out, errs)
		}
		// The managed strategy's key is not lifeboat's to create.
		s2 := newRotateSetupWith(t, fmt.Sprintf("{type: awskms, keyId: 1234abcd-12ab-34cd-56ef-1234567890ab, region: %s, endpoint: %s}", k.Region, strconv.Quote(k.Endpoint)))
		_, errs, code = keysCreate(t, s2.config, "local")
		if code != ExitError || !strings.Contains(errs, "managed strategy") {
			t.Fatalf("keys create (awskms keyId): exit %d\n%s", code, errs)
		}
	})

	t.Run("vault", func(t *testing.T) {
		v, tokenFile := startTransit(t)
		s := newRotateSetupWith(t, fmt.Sprintf("{type: vault, address: %s, transitKey: clinic, tokenFile: %s}", strconv.Quote(v.Address), strconv.Quote(tokenFile)))
		res, errs, code := keysCreate(t, s.config, "local")
		if code != ExitOK || res.Type != "vault" || res.Key != "transit/clinic" || res.Primary != "1" {
			t.Fatalf("keys create (vault): exit %d %+v\n%s", code, res, errs)
		}
		var key struct {
			Data struct {
				Type    string `json:"type"`
				Derived bool   `json:"derived"`
			} `json:"data"`
		}
		vaultDo(t, v, v.Token, http.MethodGet, "transit/keys/clinic", nil, &key)
		if key.Data.Type != "aes256-gcm96" || !key.Data.Derived {
			t.Fatalf("transit key %+v, want a derived aes256-gcm96 key", key.Data)
		}
		_, errs, code = keysCreate(t, s.config, "local")
		if code != ExitError || !strings.Contains(errs, "already exists") {
			t.Fatalf("second keys create (vault): exit %d\n%s", code, errs)
		}
		s.backups(t, 1)
	})

	t.Run("unknown provider", func(t *testing.T) {
		s := newRotateSetupWith(t, "")
		if _, _, code := keysCreate(t, s.config, "nope"); code != ExitUsage {
			t.Fatalf("exit %d, want %d", code, ExitUsage)
		}
	})
}

// backupObjects lists every key under backups/ in the store.
func (s rotateSetup) backupObjects(t *testing.T) []string {
	t.Helper()
	var out []string
	for info, err := range s.store(t, true).List(context.Background(), "backups/") {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, info.Key)
	}
	return out
}

// noSuccessSince fails when a record of kind after the first n says
// success.
func noSuccess(t *testing.T, recs []evidence.Record) {
	t.Helper()
	for _, r := range recs {
		if r.Outcome == evidence.OutcomeSuccess {
			t.Fatalf("record %s %s claims success: %v", r.Kind, r.ID, r.Subject)
		}
	}
}

// TestKEKUnavailable: a KEK that is disabled or missing (AWS KMS) or that
// denies access (Vault) fails `keys rotate` with an error naming provider,
// key and version, records the run as failed, retires nothing; and fails
// `backup run` before it writes any backup object.
func TestKEKUnavailable(t *testing.T) {
	t.Run("awskms disabled", func(t *testing.T) {
		k := testenv.StartKMS(t)
		c := kmsEnv(t, k)
		alias := "alias/lifeboat-disabled"
		s := newRotateSetupWith(t, fmt.Sprintf("{type: awskms, alias: %s, region: %s, endpoint: %s}", alias, k.Region, strconv.Quote(k.Endpoint)))
		v1, errs, code := keysCreate(t, s.config, "local")
		if code != ExitOK {
			t.Fatalf("keys create: %s", errs)
		}
		ids := s.backups(t, 2)
		if _, err := c.DisableKey(context.Background(), &kms.DisableKeyInput{KeyId: aws.String(v1.Primary)}); err != nil {
			t.Fatal(err)
		}
		out, errs, code := run(t, "--config", s.config, "keys", "rotate", "quarterly", "--signing-key", s.signingKey)
		want := "awskms:" + alias + "@" + v1.Primary
		if code != ExitError || !strings.Contains(errs, want) || !strings.Contains(errs, "disabled") {
			t.Fatalf("keys rotate with v1 disabled: exit %d, want %d and an error naming %s\n%s\n%s", code, ExitError, want, out, errs)
		}
		t.Logf("keys rotate: %s", errs)
		recs := s.rotationRecords(t)
		if len(recs) != 1 || recs[0].Outcome != evidence.OutcomeFailure {
			t.Fatalf("rotation records %+v, want one failure", recs)
		}
		failed := recs[0].Subject["failed"].([]any)
		if len(failed) != len(ids) {
			t.Fatalf("failed %v, want both backups", failed)
		}
		for _, f := range failed {
			if reason := f.(map[string]any)["reason"].(string); !strings.Contains(reason, want) {
				t.Fatalf("failure reason %q does not name %s", reason, want)
			}
		}
		if ret := recs[0].Subject["retirement"].(map[string]any); len(ret["retired"].([]any)) != 0 || ret["withheld"] == "" {
			t.Fatalf("retirement %v", ret)
		}
		rot := recs[0].Subject["rotation"].(map[string]any)
		if rot["from"] != v1.Primary || rot["rotated"] != true {
			t.Fatalf("rotation %v", rot)
		}

		// backup run with the (new) primary disabled fails before
		// writing any backup object.
		v2 := rot["to"].(string)
		if _, err := c.DisableKey(context.Background(), &kms.DisableKeyInput{KeyId: aws.String(v2)}); err != nil {
			t.Fatal(err)
		}
		before := s.backupObjects(t)
		_, errs, code = run(t, "--config", s.config, "backup", "run", "clinic", "--signing-key", s.signingKey)
		want2 := "awskms:" + alias + "@" + v2
		if code == ExitOK || !strings.Contains(errs, want2) {
			t.Fatalf("backup run with the primary disabled: exit %d, want an error naming %s\n%s", code, want2, errs)
		}
		t.Logf("backup run: %s", errs)
		if after := s.backupObjects(t); len(after) != len(before) {
			t.Fatalf("backup run wrote %d objects under backups/ before failing", len(after)-len(before))
		}
		noSuccess(t, s.records(t, evidence.KindBackup)[len(ids):])
	})

	t.Run("awskms missing", func(t *testing.T) {
		k := testenv.StartKMS(t)
		kmsEnv(t, k)
		alias := "alias/lifeboat-never-created"
		s := newRotateSetupWith(t, fmt.Sprintf("{type: awskms, alias: %s, region: %s, endpoint: %s}", alias, k.Region, strconv.Quote(k.Endpoint)))
		_, errs, code := run(t, "--config", s.config, "keys", "rotate", "quarterly", "--signing-key", s.signingKey)
		if code != ExitError || !strings.Contains(errs, "awskms:"+alias) || !strings.Contains(errs, "key not found") {
			t.Fatalf("keys rotate with a missing key: exit %d\n%s", code, errs)
		}
		t.Logf("keys rotate: %s", errs)
		recs := s.rotationRecords(t)
		if len(recs) != 1 || recs[0].Outcome != evidence.OutcomeFailure || !strings.Contains(recs[0].Subject["error"].(string), alias) {
			t.Fatalf("rotation records %+v, want one failure naming %s", recs, alias)
		}
		_, errs, code = run(t, "--config", s.config, "backup", "run", "clinic", "--signing-key", s.signingKey)
		if code == ExitOK || !strings.Contains(errs, "awskms:"+alias) || !strings.Contains(errs, "key not found") {
			t.Fatalf("backup run with a missing key: exit %d\n%s", code, errs)
		}
		if objs := s.backupObjects(t); len(objs) != 0 {
			t.Fatalf("backup run with a missing key wrote %v", objs)
		}
		noSuccess(t, s.records(t, evidence.KindBackup))
	})

	t.Run("vault denied", func(t *testing.T) {
		v, tokenFile := startTransit(t)
		s := newRotateSetupWith(t, fmt.Sprintf("{type: vault, address: %s, transitKey: clinic, tokenFile: %s}", strconv.Quote(v.Address), strconv.Quote(tokenFile)))
		if _, errs, code := keysCreate(t, s.config, "local"); code != ExitOK {
			t.Fatalf("keys create: %s", errs)
		}
		ids := s.backups(t, 2)
		// A token that may read and rotate the key but neither rewrap
		// nor decrypt with it, nor encrypt.
		tok := vaultToken(t, v, "rotate-only", `
path "transit/keys/clinic" { capabilities = ["read"] }
path "transit/keys/clinic/rotate" { capabilities = ["update"] }
path "transit/rewrap/clinic" { capabilities = ["deny"] }
path "transit/decrypt/clinic" { capabilities = ["deny"] }
path "transit/encrypt/clinic" { capabilities = ["deny"] }
`)
		if err := os.WriteFile(tokenFile, []byte(tok), 0o600); err != nil {
			t.Fatal(err)
		}
		_, errs, code := run(t, "--config", s.config, "keys", "rotate", "quarterly", "--signing-key", s.signingKey)
		want := "vault:transit/clinic@1"
		if code != ExitError || !strings.Contains(errs, want) || !strings.Contains(errs, "denied") {
			t.Fatalf("keys rotate with rewrap denied: exit %d, want an error naming %s\n%s", code, want, errs)
		}
		t.Logf("keys rotate: %s", errs)
		for _, secret := range []string{tok, v.Token} {
			if strings.Contains(errs, secret) {
				t.Fatal("the error shows a Vault token")
			}
		}
		recs := s.rotationRecords(t)
		if len(recs) != 1 || recs[0].Outcome != evidence.OutcomeFailure || len(recs[0].Subject["failed"].([]any)) != len(ids) {
			t.Fatalf("rotation records %+v, want one failure naming both backups", recs)
		}
		// Nothing retired: version 1 still decrypts (min_decryption_version 1).
		var key struct {
			Data struct {
				MinDecryption int `json:"min_decryption_version"`
				Latest        int `json:"latest_version"`
			} `json:"data"`
		}
		vaultDo(t, v, v.Token, http.MethodGet, "transit/keys/clinic", nil, &key)
		if key.Data.MinDecryption != 1 || key.Data.Latest != 2 {
			t.Fatalf("transit key %+v, want version 2 created and version 1 not retired", key.Data)
		}

		before := s.backupObjects(t)
		_, errs, code = run(t, "--config", s.config, "backup", "run", "clinic", "--signing-key", s.signingKey)
		if code == ExitOK || !strings.Contains(errs, "vault:transit/clinic@2") || !strings.Contains(errs, "denied") {
			t.Fatalf("backup run with encrypt denied: exit %d\n%s", code, errs)
		}
		t.Logf("backup run: %s", errs)
		if after := s.backupObjects(t); len(after) != len(before) {
			t.Fatalf("backup run wrote %d objects under backups/ before failing", len(after)-len(before))
		}
		noSuccess(t, s.records(t, evidence.KindBackup)[len(ids):])

		// A token that may only read the key: the rotation itself is
		// denied, naming the current primary.
		ro := vaultToken(t, v, "read-only", `path "transit/keys/clinic" { capabilities = ["read"] }`)
		if err := os.WriteFile(tokenFile, []byte(ro), 0o600); err != nil {
			t.Fatal(err)
		}
		_, errs, code = run(t, "--config", s.config, "keys", "rotate", "quarterly", "--signing-key", s.signingKey)
		if code != ExitError || !strings.Contains(errs, "rotate vault:transit/clinic@2") || !strings.Contains(errs, "denied") {
			t.Fatalf("keys rotate with rotate denied: exit %d\n%s", code, errs)
		}
		recs = s.rotationRecords(t)
		if len(recs) != 2 || recs[1].Outcome != evidence.OutcomeFailure ||
			!strings.HasPrefix(recs[1].Subject["rotation"].(map[string]any)["reason"].(string), "not rotated: rotate failed: ") {
			t.Fatalf("rotation records %+v", recs)
		}
	})
}
