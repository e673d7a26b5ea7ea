package backup

import (
	"context"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/config"
)

// veleroSource takes a velero source into m.
func (r *run) veleroSource(ctx context.Context, src *config.VeleroSource, m *catalog.Manifest) error {
	m.Skipped = append(m.Skipped, r.skip(config.SourceVelero, "this source is not supported by this version of lifeboat"))
	return nil
}
