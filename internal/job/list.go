package job

import (
	"context"
	"errors"
	"fmt"
	iofs "io/fs"
	"slices"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/wire"
)

// BackupEntry is one backup of ListBackups.
type BackupEntry struct {
	Backup       string    `json:"backup"`
	Plan         string    `json:"plan"`
	Store        string    `json:"store"`
	Status       string    `json:"status"`
	Started      time.Time `json:"started"`
	Completed    time.Time `json:"completed"`
	PointInTime  time.Time `json:"pointInTime"`
	StoredBytes  int64     `json:"storedBytes"`
	EtcdRevision int64     `json:"etcdRevision,omitempty"`
	// Replicas are the backup's states on its plan's replica stores
	// (docs/format.md §9.4); empty when the plan has none.
	Replicas []ReplicaState `json:"replicas,omitempty"`
}

// ListBackupsOptions choose the stores: the one named, else the store of
// the plan named (and only that plan's backups), else every store a
// BackupPlan writes to.
type ListBackupsOptions struct {
	Plan, Store string
}

// ListBackups lists the complete backups (those with a manifest) in the
// chosen stores, newest first, with their states on their plans' replica
// stores. Backups that never committed are not listed, and an fs store
// nothing was written to yet holds none. Warnings name the replicas that
// could not be read. An unknown plan or store is a NotFoundError.
func ListBackups(ctx context.Context, env *wire.Env, o ListBackupsOptions) (entries []BackupEntry, warnings []string, err error) {
	var stores []string
	switch {
	case o.Store != "":
		stores = []string{o.Store}
	case o.Plan != "":
		p, ok := env.Set.BackupPlan(o.Plan)
		if !ok {
			return nil, nil, fmt.Errorf("backup list: %w", &NotFoundError{config.KindBackupPlan, o.Plan})
		}
		stores = []string{p.Spec.Store}
	default:
		for _, p := range env.Set.BackupPlans {
			if !slices.Contains(stores, p.Spec.Store) {
				stores = append(stores, p.Spec.Store)
			}
		}
		slices.Sort(stores)
	}
	entries = []BackupEntry{}
	for _, name := range stores {
		cs, ok := env.Set.Store(name)
		if !ok {
			return nil, warnings, fmt.Errorf("backup list: %w", &NotFoundError{config.KindStore, name})
		}
		st, err := env.OpenStore(ctx, cs, true)
		if errors.Is(err, iofs.ErrNotExist) {
			continue // an fs store nothing was written to yet
		}
		if err != nil {
			return nil, warnings, fmt.Errorf("backup list: %w", err)
		}
		ms, err := catalog.List(ctx, st, catalog.ListOptions{Plan: o.Plan})
		if err != nil {
			return nil, warnings, fmt.Errorf("backup list: store %s: %w", name, err)
		}
		replicas, w := ReplicaStates(ctx, env, st, ms)
		warnings = append(warnings, w...)
		for _, m := range ms {
			e := BackupEntry{
				Backup: m.Backup, Plan: m.Plan, Store: name, Status: m.Status,
				Started: m.Started, Completed: m.Completed, PointInTime: m.PointInTime(), StoredBytes: m.StoredSize(),
				Replicas: replicas[m.Backup],
			}
			if m.Etcd != nil {
				e.EtcdRevision = m.Etcd.Revision
			}
			entries = append(entries, e)
		}
	}
	slices.SortStableFunc(entries, func(x, y BackupEntry) int { return y.Started.Compare(x.Started) })
	return entries, warnings, nil
}
