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
	sourcevault "github.com/lifeboat-dr/lifeboat/internal/source/vault"
)

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

// RestoreKey restores a transit key from its backup string (a JSON string,
// quotes included, as vault-transit.json holds it) under name. The request
// body is zeroed afterwards.
func (s *Server) RestoreKey(ctx context.Context, name string, backup json.RawMessage) error {
	body := make([]byte, 0, len(backup)+16)
	body = append(body, `{"backup":`...)
	body = append(body, backup...)
	body = append(body, '}')
	defer clear(body)
	_, err := sourcevault.PutRaw(ctx, s.client, TransitMount+"/restore/"+name, body)
	if err != nil {
		return apiErr("restore transit key", name, err)
	}
	return nil
}

// CanaryDigest decrypts a canary with the restored key name (with context
// ctxB64, base64, when not empty) and returns the hex SHA-256 of the
// plaintext. The plaintext is zeroed.
func (s *Server) CanaryDigest(ctx context.Context, name, ciphertext, ctxB64 string) (string, error) {
	ctJSON, _ := json.Marshal(ciphertext)
	body := []byte(`{"ciphertext":` + string(ctJSON))
	if ctxB64 != "" {
		cj, _ := json.Marshal(ctxB64)
		body = append(body, `,"context":`+string(cj)...)
	}
	body = append(body, '}')
	rb, err := sourcevault.PutRaw(ctx, s.client, TransitMount+"/decrypt/"+name, body)
	defer clear(rb)
	if err != nil {
		return "", apiErr("decrypt canary with transit key", name, err)
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
		return "", fmt.Errorf("decrypt canary with transit key %s: decode the answer: %v", name, sourcevault.DecodeError(err))
	}
	sum := sha256.Sum256(r.Data.Plaintext)
	return hex.EncodeToString(sum[:]), nil
}

// latestVersion reads a restored key's latest version.
func (s *Server) latestVersion(ctx context.Context, name string) (int, error) {
	sec, err := s.client.Logical().ReadWithContext(ctx, TransitMount+"/keys/"+name)
	if err != nil {
		return 0, apiErr("read restored transit key", name, err)
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
func (s *Server) VerifyCanaries(ctx context.Context, art sourcevault.TransitArtifact, keys []catalog.VaultTransitKey) []KeyResult {
	var out []KeyResult
	for _, k := range keys {
		r := KeyResult{Name: k.Name}
		r.Version, r.Err = s.verifyKey(ctx, art, k)
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

func (s *Server) verifyKey(ctx context.Context, art sourcevault.TransitArtifact, k catalog.VaultTransitKey) (int, error) {
	b, ok := art.Keys[k.Name]
	if !ok {
		return 0, fmt.Errorf("transit key %s: not in %s", k.Name, catalog.ArtifactVaultTransit)
	}
	if err := s.RestoreKey(ctx, k.Name, b.Backup); err != nil {
		return 0, err
	}
	v, err := s.latestVersion(ctx, k.Name)
	if err != nil {
		return 0, err
	}
	if err := checkRestoredVersion(k.Name, v, b.LatestVersion, k.LatestVersion); err != nil {
		return v, err
	}
	got, err := s.CanaryDigest(ctx, k.Name, k.CanaryCiphertext, k.CanaryContext)
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

func apiErr(step, name string, err error) error {
	var re *api.ResponseError
	if errors.As(err, &re) {
		return fmt.Errorf("%s %s: scratch Vault answered %d: %s", step, name, re.StatusCode, sourcevault.VaultMessage(re))
	}
	return fmt.Errorf("%s %s: %w", step, name, err)
}
