package backup

import (
	"context"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/source/velero"
)

// veleroSource runs a Velero backup and records it in m (docs/format.md
// §6.4). It writes no artifact: the data is in Velero's storage location.
// Once the Velero Backup is created, a failure of the lifeboat backup (of
// this source or a later step) asks Velero to delete it: nothing would
// refer to that copy of the cluster's data.
func (r *run) veleroSource(ctx context.Context, src *config.VeleroSource, m *catalog.Manifest) error {
	cfg, err := r.kube()
	if err != nil {
		return err
	}
	res, err := velero.Run(ctx, velero.Options{
		Config: cfg, Plan: r.opts.Plan.Metadata.Name, Backup: r.id,
		Namespace: src.Namespace, IncludeNamespaces: src.IncludeNamespaces,
		RetainUntil: r.retainUntil, Timeout: src.Timeout.Std(), Now: r.now, Logger: r.log,
	})
	if made := res.Created; made.UID != "" {
		r.undo = append(r.undo, func(ctx context.Context) {
			if err := velero.Discard(ctx, cfg, made, r.id, r.log); err != nil {
				r.log.Error("velero backup of the failed backup not deleted; it expires with its TTL, or delete it with `velero backup delete`",
					"veleroBackup", made.Namespace+"/"+made.Name, "err", err)
			}
		})
	}
	if err != nil {
		return err
	}
	m.Velero = &res.Velero
	for _, s := range res.Skipped {
		m.Skipped = append(m.Skipped, r.skip(s.Source, s.Reason))
	}
	return nil
}
