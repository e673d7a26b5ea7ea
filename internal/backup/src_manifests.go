package backup

import (
	"context"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/config"
)

// manifestsSource takes a manifests source into m.
func (r *run) manifestsSource(ctx context.Context, src *config.ManifestsSource, m *catalog.Manifest) error {
	m.Skipped = append(m.Skipped, r.skip(config.SourceManifests, "this source is not supported by this version of lifeboat"))
	return nil
}
