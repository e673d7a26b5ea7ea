package job

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/kube"
	"github.com/lifeboat-dr/lifeboat/internal/source/volumes"
	"github.com/lifeboat-dr/lifeboat/internal/wire"
)

// RestoreVolumesOptions configure RestoreVolumes.
type RestoreVolumesOptions struct {
	RestoreSelection
	// Target reaches the cluster restored into.
	Target kube.Options
	// NamespaceMap restores claims of namespace a into namespace b.
	NamespaceMap map[string]string
	// Timeout bounds the wait for each restored VolumeSnapshot; zero
	// means five minutes.
	Timeout time.Duration
	// Apply, Confirm, Signer: as for RestoreManifests.
	Apply   bool
	Confirm string
	Signer  *evidence.Signer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// RestoreVolumesResult is what RestoreVolumes did or would do.
type RestoreVolumesResult struct {
	RestoreCommon
	Server        string                 `json:"server"`
	KubeSystemUID string                 `json:"kubeSystemUID"`
	Claims        []volumes.ClaimRestore `json:"claims"`
}

// RestoreVolumes restores the volume snapshots a backup recorded into new
// claims of the cluster opts.Target reaches (volumes.Restore): a
// pre-provisioned VolumeSnapshotContent and a VolumeSnapshot per claim,
// then the claim from it. When the backup also holds a manifests export,
// each claim keeps its backed-up access modes, storage class and size. The
// backup is verified first as for every restore. Without Apply every
// create is a server-side dry run; Apply needs Confirm to be the target's
// kube-system UID and appends a signed `restore` record.
func RestoreVolumes(ctx context.Context, env *wire.Env, o RestoreVolumesOptions) (RestoreVolumesResult, error) {
	var res RestoreVolumesResult
	now := o.Now
	if now == nil {
		now = time.Now
	}
	fail := func(err error) (RestoreVolumesResult, error) { return res, fmt.Errorf("restore volumes: %w", err) }
	cfg, server, uid, err := targetIdentity(ctx, o.Target, o.Apply, o.Confirm, o.Signer)
	res.Server, res.KubeSystemUID = server, uid
	if err != nil {
		return fail(err)
	}
	src, err := openForRestore(ctx, env, o.RestoreSelection, !o.Apply, now)
	res.RestoreCommon = src.common()
	if err != nil {
		return fail(err)
	}
	if src.m.Volumes == nil {
		return fail(fmt.Errorf("backup %s holds no volume snapshots", src.id))
	}
	claims := map[string]*corev1.PersistentVolumeClaim{}
	if src.m.Manifests != nil {
		a, err := readManifestsArchive(ctx, src)
		if err != nil {
			return fail(err)
		}
		if claims, err = a.Claims(); err != nil {
			return fail(err)
		}
	}
	t0 := now()
	res.Claims, err = volumes.Restore(ctx, volumes.RestoreOptions{
		Config: cfg, Backup: src.id, Volumes: *src.m.Volumes, NamespaceMap: o.NamespaceMap,
		Claims: claims, DryRun: !o.Apply, Timeout: o.Timeout, Logger: env.Logger,
	})
	counts := map[string]int{}
	for _, c := range res.Claims {
		counts[c.Outcome]++
	}
	name := "apply"
	if !o.Apply {
		name = "dry run"
	}
	res.Stages = append(res.Stages, RestoreStage{Name: name, Detail: fmt.Sprintf("%d claims created, %d skipped, %d failed",
		counts[volumes.RestoreCreated], counts[volumes.RestoreSkipped], counts[volumes.RestoreFailed]), DurationMs: now().Sub(t0).Milliseconds()})
	if err != nil {
		return fail(err)
	}
	if !o.Apply {
		return res, nil
	}
	res.Applied = true
	outcome := evidence.OutcomeSuccess
	if counts[volumes.RestoreFailed] > 0 {
		outcome = evidence.OutcomePartial
	}
	cs := map[string]any{}
	for k, v := range counts {
		cs[k] = int64(v)
	}
	rec, err := appendRestoreRecord(ctx, src, o.Signer, now, outcome, res.Stages, map[string]any{
		"target": "volumes", "server": res.Server, "kubeSystemUID": res.KubeSystemUID,
		"claims": int64(len(res.Claims)), "counts": cs,
	})
	if err != nil {
		return res, fmt.Errorf("restore volumes: the claims are created, but the restore record is not: %w", err)
	}
	res.Evidence = rec.Key()
	if n := counts[volumes.RestoreFailed]; n > 0 {
		return res, fmt.Errorf("restore volumes: %d of %d claims failed: %w", n, len(res.Claims), ErrPartialRestore)
	}
	return res, nil
}
