package vault

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/hashicorp/vault/api"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
)

// Transit restores transit keys from a vault-transit.json artifact into
// the transit engine at Mount of the Vault Client reaches, and checks each
// key's canary: a drill's scratch Vault, or the Vault of a restore.
type Transit struct {
	Client *api.Client
	Mount  string
}

// ErrCanaryMismatch is wrapped when a canary decrypts to a plaintext whose
// SHA-256 is not the manifest's.
var ErrCanaryMismatch = errors.New("canary digest does not match the manifest")

// KeyResult is what restoring one key and decrypting its canary found.
type KeyResult struct {
	Name string
	// Version is the key's latest version after the restore.
	Version int
	// Err is nil when the key restored and its canary decrypted to the
	// manifest's digest; otherwise it names the key and the step.
	Err error
}

// Exists reports whether the transit key name exists at the mount.
func (t Transit) Exists(ctx context.Context, name string) (bool, error) {
	sec, err := t.Client.Logical().ReadWithContext(ctx, t.Mount+"/keys/"+name)
	if err != nil {
		return false, transitErr("read transit key", name, err)
	}
	return sec != nil, nil
}

// RestoreKey restores a transit key from its backup string (a JSON string,
// quotes included, as vault-transit.json holds it) under name; force makes
// Vault replace a key that exists (its versions newer than the backup's
// are lost: only ever on request). The request body is zeroed afterwards.
func (t Transit) RestoreKey(ctx context.Context, name string, backup json.RawMessage, force bool) error {
	body := make([]byte, 0, len(backup)+16)
	body = append(body, `{"backup":`...)
	body = append(body, backup...)
	if force {
		body = append(body, `,"force":true`...)
	}
	body = append(body, '}')
	defer clear(body)
	_, err := PutRaw(ctx, t.Client, t.Mount+"/restore/"+name, body)
	if err != nil {
		return transitErr("restore transit key", name, err)
	}
	return nil
}

// CanaryDigest decrypts a canary with the restored key name (with context
// ctxB64, base64, when not empty) and returns the hex SHA-256 of the
// plaintext. The plaintext is zeroed.
func (t Transit) CanaryDigest(ctx context.Context, name, ciphertext, ctxB64 string) (string, error) {
	ctJSON, _ := json.Marshal(ciphertext)
	body := []byte(`{"ciphertext":` + string(ctJSON))
	if ctxB64 != "" {
		cj, _ := json.Marshal(ctxB64)
		body = append(body, `,"context":`+string(cj)...)
	}
	body = append(body, '}')
	rb, err := PutRaw(ctx, t.Client, t.Mount+"/decrypt/"+name, body)
	defer clear(rb)
	if err != nil {
		return "", transitErr("decrypt canary with transit key", name, err)
	}
	var r struct {
		Data struct {
			// encoding/json decodes the base64 plaintext into bytes.
			Plaintext []byte `json:"plaintext"`
		} `json:"data"`
	}
	err = json.Unmarshal(rb, &r)
	defer clear(r.Data.Plaintext)
	if err != nil {
		return "", fmt.Errorf("decrypt canary with transit key %s: decode the answer: %v", name, DecodeError(err))
	}
	sum := sha256.Sum256(r.Data.Plaintext)
	return hex.EncodeToString(sum[:]), nil
}

// latestVersion reads a restored key's latest version.
func (t Transit) LatestVersion(ctx context.Context, name string) (int, error) {
	sec, err := t.Client.Logical().ReadWithContext(ctx, t.Mount+"/keys/"+name)
	if err != nil {
		return 0, transitErr("read restored transit key", name, err)
	}
	if sec == nil {
		return 0, fmt.Errorf("read restored transit key %s: not found after restore", name)
	}
	num, ok := sec.Data["latest_version"].(json.Number)
	n, err := num.Int64()
	if !ok || err != nil || n < 1 {
		return 0, fmt.Errorf("read restored transit key %s: unexpected latest_version %v", name, sec.Data["latest_version"])
	}
	return int(n), nil
}

// VerifyCanaries restores every key the manifest lists from art and
// decrypts its canary, and returns one result per key in the manifest's
// order. A key in the artifact but not in the manifest, or the reverse,
// fails.
func (t Transit) VerifyCanaries(ctx context.Context, art TransitArtifact, force bool, keys []catalog.VaultTransitKey) []KeyResult {
	var out []KeyResult
	for _, k := range keys {
		r := KeyResult{Name: k.Name}
		r.Version, r.Err = t.RestoreAndVerify(ctx, art, k, force)
		out = append(out, r)
	}
	var extra []string
	for name := range art.Keys {
		if !slices.ContainsFunc(keys, func(k catalog.VaultTransitKey) bool { return k.Name == name }) {
			extra = append(extra, name)
		}
	}
	slices.Sort(extra)
	for _, name := range extra {
		out = append(out, KeyResult{Name: name, Err: fmt.Errorf("transit key %s: in %s but not in the manifest", name, catalog.ArtifactVaultTransit)})
	}
	return out
}

// RestoreAndVerify restores one key of the artifact (force replaces a key
// that exists) and checks its latest version and its canary against the
// manifest. It returns the restored latest version.
func (t Transit) RestoreAndVerify(ctx context.Context, art TransitArtifact, k catalog.VaultTransitKey, force bool) (int, error) {
	b, ok := art.Keys[k.Name]
	if !ok {
		return 0, fmt.Errorf("transit key %s: not in %s", k.Name, catalog.ArtifactVaultTransit)
	}
	if err := t.RestoreKey(ctx, k.Name, b.Backup, force); err != nil {
		return 0, err
	}
	v, err := t.LatestVersion(ctx, k.Name)
	if err != nil {
		return 0, err
	}
	if err := checkRestoredVersion(k.Name, v, b.LatestVersion, k.LatestVersion); err != nil {
		return v, err
	}
	got, err := t.CanaryDigest(ctx, k.Name, k.CanaryCiphertext, k.CanaryContext)
	if err != nil {
		return v, err
	}
	if got != k.CanarySHA256 {
		return v, fmt.Errorf("transit key %s: canary decrypted to SHA-256 %s, the manifest says %s: %w", k.Name, got, k.CanarySHA256, ErrCanaryMismatch)
	}
	return v, nil
}

// checkRestoredVersion compares a restored key's latest version with the
// versions the artifact and the manifest recorded. Both were read before
// the key's backup was taken, so a key that rotated in between (by hand or
// by its auto_rotate_period) restores with a later version than recorded:
// that is accepted, as the canary (made with a version at most the
// recorded one) must still decrypt. A restored version below either
// recorded one means versions are missing, and fails.
func checkRestoredVersion(name string, restored, artifact, manifest int) error {
	if restored < artifact || restored < manifest {
		return fmt.Errorf("transit key %s: restored with latest version %d, older than recorded (the artifact says %d and the manifest %d)", name, restored, artifact, manifest)
	}
	return nil
}

func transitErr(step, name string, err error) error {
	var re *api.ResponseError
	if errors.As(err, &re) {
		return fmt.Errorf("%s %s: Vault answered %d: %s", step, name, re.StatusCode, VaultMessage(re))
	}
	return fmt.Errorf("%s %s: %w", step, name, err)
}
