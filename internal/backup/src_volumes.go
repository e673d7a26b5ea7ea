package backup

import (
	"context"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/config"
)

// volumesSource takes a volumes source into m.
func (r *run) volumesSource(ctx context.Context, src *config.VolumesSource, m *catalog.Manifest) error {
	m.Skipped = append(m.Skipped, r.skip(config.SourceVolumes, "this source is not supported by this version of lifeboat"))
	return nil
}
