package backup

import (
	"context"
	"fmt"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/source/manifests"
)

// manifestsSource exports the cluster's objects through its API server
// into the manifests.tar artifact and fills m.Manifests. Resources the API
// server would not list, and resources listed across an expired continue
// token (not a consistent snapshot), are recorded in m.Skipped
// (Manifests.Skips), making the backup partial; any other failure fails
// the source and stores nothing.
func (r *run) manifestsSource(ctx context.Context, src *config.ManifestsSource, m *catalog.Manifest) error {
	cfg, err := r.kube()
	if err != nil {
		return fmt.Errorf("manifests: %w", err)
	}
	e, err := manifests.Start(ctx, manifests.Options{
		Config:            cfg,
		IncludeNamespaces: src.IncludeNamespaces,
		ExcludeNamespaces: src.ExcludeNamespaces,
		ExcludeResources:  src.ExcludeResources,
		LabelSelector:     src.LabelSelector,
		Logger:            r.log,
	})
	if err != nil {
		return err
	}
	defer e.Close()
	a, err := r.putArtifact(ctx, catalog.ArtifactManifests, catalog.SourceManifests, e, 0)
	if err != nil {
		return err
	}
	// putArtifact read the stream to io.EOF, which the export gives only
	// after the index; Result reports any error all the same.
	res, err := e.Result()
	if err != nil {
		return err
	}
	m.Artifacts = append(m.Artifacts, a)
	m.Manifests = &res
	for _, s := range res.Skips() {
		m.Skipped = append(m.Skipped, r.skip(catalog.SourceManifests, s.Reason))
	}
	return nil
}
