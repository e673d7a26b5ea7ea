package backup

import (
	"context"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/config"
)

// encryptionConfigSecret takes the EncryptionConfiguration from a Secret.
func (r *run) encryptionConfigSecret(ctx context.Context, ref *config.SecretKeyRef, m *catalog.Manifest) error {
	m.Skipped = append(m.Skipped, r.skip(config.SourceEncryptionConfig, "an encryption config from a Secret (secretRef) is not supported by this version of lifeboat"))
	return nil
}
