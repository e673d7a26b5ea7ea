package backup

import (
	"context"
	"errors"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/source/volumes"
	"github.com/lifeboat-dr/lifeboat/internal/store"
)

// volumesSource takes CSI VolumeSnapshots of the selected claims into m
// (docs/format.md §6.2). It writes no artifact: the data stays in the
// storage system, and m.Volumes records where.
func (r *run) volumesSource(ctx context.Context, src *config.VolumesSource, m *catalog.Manifest) error {
	cfg, err := r.kube()
	if err != nil {
		return err
	}
	res, err := volumes.Take(ctx, volumes.Options{
		Config: cfg, Plan: r.opts.Plan.Metadata.Name, Backup: r.id,
		Namespaces: src.Namespaces, LabelSelector: src.LabelSelector, SnapshotClass: src.SnapshotClass,
		Timeout: src.Timeout.Std(), Partial: src.OnError == config.VolumeErrorPartial,
		RetainUntil: r.retainUntil, Retention: r.retention, Committed: r.committedVolumes, Now: r.now, Logger: r.log,
	})
	if err != nil {
		return err
	}
	m.Volumes = &res.Volumes
	taken := res.Volumes
	r.undo = append(r.undo, func(ctx context.Context) {
		if err := volumes.Discard(ctx, cfg, r.id, taken, r.log); err != nil {
			r.log.Error("volume snapshots of the failed backup not deleted; they expire with their retain-until annotation", "err", err)
		}
	})
	for _, s := range res.Skipped {
		m.Skipped = append(m.Skipped, r.skip(s.Source, s.Reason))
	}
	return nil
}

// committedVolumes is volumes.Options.Committed: what the object-locked
// manifest of an earlier backup in this run's store says about its
// snapshots. A backup without a manifest is not found.
func (r *run) committedVolumes(ctx context.Context, id string) (volumes.Commit, bool, error) {
	m, err := catalog.Read(ctx, r.opts.Store, id)
	switch {
	case errors.Is(err, catalog.ErrNoBackup) || errors.Is(err, store.ErrNotFound):
		return volumes.Commit{}, false, nil
	case err != nil:
		return volumes.Commit{}, false, err
	}
	c := volumes.Commit{RetainUntil: m.RetainUntil}
	if m.Volumes != nil {
		for _, s := range m.Volumes.Snapshots {
			c.Snapshots = append(c.Snapshots, s.Namespace+"/"+s.Snapshot)
		}
	}
	return c, true, nil
}
