package backup

import (
	"context"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/config"
)

// vaultSource takes a vault source into m.
func (r *run) vaultSource(ctx context.Context, src *config.VaultSource, m *catalog.Manifest) error {
	m.Skipped = append(m.Skipped, r.skip(config.SourceVault, "this source is not supported by this version of lifeboat"))
	return nil
}
