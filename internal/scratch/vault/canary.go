package vault

import (
	"context"
	"encoding/json"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	sourcevault "github.com/lifeboat-dr/lifeboat/internal/source/vault"
)

// ErrCanaryMismatch is wrapped when a canary decrypts to another digest.
var ErrCanaryMismatch = sourcevault.ErrCanaryMismatch

// KeyResult is the outcome of one transit key (sourcevault.KeyResult).
type KeyResult = sourcevault.KeyResult

// transit is the scratch server's transit engine.
func (s *Server) transit() sourcevault.Transit {
	return sourcevault.Transit{Client: s.client, Mount: TransitMount}
}

// RestoreKey restores a transit key from its backup string into the
// scratch Vault.
func (s *Server) RestoreKey(ctx context.Context, name string, backup json.RawMessage) error {
	return s.transit().RestoreKey(ctx, name, backup, false)
}

// CanaryDigest decrypts a canary with a restored key and returns the
// SHA-256 of the plaintext; the plaintext itself is cleared.
func (s *Server) CanaryDigest(ctx context.Context, name, ciphertext, ctxB64 string) (string, error) {
	return s.transit().CanaryDigest(ctx, name, ciphertext, ctxB64)
}

// VerifyCanaries restores every key of the artifact the manifest lists
// into the scratch Vault and checks its canary (sourcevault.Transit).
func (s *Server) VerifyCanaries(ctx context.Context, art sourcevault.TransitArtifact, keys []catalog.VaultTransitKey) []KeyResult {
	return s.transit().VerifyCanaries(ctx, art, false, keys)
}
