package job

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/rotation"
	"github.com/lifeboat-dr/lifeboat/internal/wire"
)

// RotateOptions configure Rotate.
type RotateOptions struct {
	// Signer signs the evidence records. Required.
	Signer *evidence.Signer
	// NoRotate only rewraps under the current primary (finishes an
	// interrupted run) instead of creating a new version first.
	NoRotate bool
	// Concurrency is how many backups are rewrapped at once; zero means
	// rotation.DefaultConcurrency.
	Concurrency int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// RotateResult is what a rotation run did.
type RotateResult struct {
	// Run is the run's record: versions, per-store results, retirement.
	Run *rotation.RunRecord
	// Records are the evidence records appended, by store name.
	Records map[string]evidence.Record
	// RecordErrors are the stores whose record could not be written.
	RecordErrors map[string]error
}

// Rotate carries out the RotationPolicy called policy over every store
// written by a plan that uses its key provider (rotation.RunPolicy), then
// appends a rotation record to each store it opened, whatever happened.
// An error wrapping rotation.ErrIncomplete means some backups were not
// rewrapped (Run names them); other errors mean the run stopped early or
// its evidence is not recorded everywhere.
func Rotate(ctx context.Context, env *wire.Env, policy string, o RotateOptions) (RotateResult, error) {
	res := RotateResult{Records: map[string]evidence.Record{}, RecordErrors: map[string]error{}}
	pol, ok := env.Set.RotationPolicy(policy)
	if !ok {
		return res, fmt.Errorf("keys rotate: %w", &NotFoundError{config.KindRotationPolicy, policy})
	}
	kp, ok := env.Set.KeyProvider(pol.Spec.KeyProvider)
	if !ok {
		return res, fmt.Errorf("keys rotate %s: %w", policy, &NotFoundError{config.KindKeyProvider, pol.Spec.KeyProvider})
	}
	storeNames := wire.StoresOfKeyProvider(env.Set, kp.Metadata.Name)
	if len(storeNames) == 0 {
		return res, fmt.Errorf("keys rotate %s: no BackupPlan uses key provider %s, so there is nothing to rewrap", policy, kp.Metadata.Name)
	}
	// Without a signer the run could not be evidenced: stop before
	// changing anything.
	if o.Signer == nil {
		return res, fmt.Errorf("keys rotate %s: no evidence signer", policy)
	}
	now := o.Now
	if now == nil {
		now = time.Now
	}
	started := now().UTC()
	id, err := NewRunID(policy, started)
	if err != nil {
		return res, fmt.Errorf("keys rotate %s: %w", policy, err)
	}
	rr := &rotation.RunRecord{
		ID: id, Policy: policy, KeyProvider: kp.Metadata.Name,
		Provider: string(kp.Spec.Type), Key: wire.ConfiguredKey(kp),
		Stores: storeNames, Started: started, Results: map[string]*rotation.Result{},
		RetirePolicy: rotation.Policy(pol.Spec.RetireOldVersions),
	}
	res.Run = rr
	var (
		stores []rotation.NamedStore
		runErr error
	)
	for _, name := range storeNames {
		st, _, err := env.StoreNamed(ctx, name, false)
		if err != nil {
			runErr = err
			rr.NotRotatedReason = "a store could not be opened"
			rr.RetirementWithheld = "the run stopped early"
			break
		}
		stores = append(stores, rotation.NamedStore{Name: name, Store: st})
	}
	if runErr == nil {
		prov, err := env.OpenKeys(ctx, kp)
		if err != nil {
			runErr = err
			rr.NotRotatedReason = "the key provider could not be opened"
			rr.RetirementWithheld = "the run stopped early"
		} else {
			var minAge time.Duration
			if kp.Spec.Rotation != nil {
				minAge = kp.Spec.Rotation.Every.Std()
			}
			runErr = rotation.RunPolicy(ctx, rr, rotation.PolicyOptions{
				Stores: stores, Provider: prov, Policy: rotation.Policy(pol.Spec.RetireOldVersions),
				Rotate: !o.NoRotate, MinAge: minAge, Now: o.Now, Logger: env.Logger, Concurrency: o.Concurrency,
			})
		}
	}
	// RunPolicy fills Stores with those it covered; a store that could
	// not be opened is still one the run had to cover.
	rr.Stores = storeNames
	replicateKeyObjects(ctx, env, kp.Metadata.Name, o)
	if runErr != nil {
		runErr = fmt.Errorf("keys rotate %s: %w", policy, runErr)
		if !errors.Is(runErr, rotation.ErrIncomplete) {
			rr.Err = runErr
		}
	}
	rr.Finished = now().UTC()
	// Evidence in every store opened, whatever happened; an interrupted
	// run is recorded too, within a bound.
	rctx, cancel := detached(ctx)
	defer cancel()
	var recErrs []error
	for _, s := range stores {
		cs, _ := env.Set.Store(s.Name)
		rec, err := rotation.Publish(rctx, rr, rotation.PublishOptions{
			Store: s.Store, StoreName: s.Name, Signer: o.Signer, Retention: config.EvidenceRetention(cs), Logger: env.Logger,
		})
		if err != nil {
			res.RecordErrors[s.Name] = err
			recErrs = append(recErrs, err)
			if env.Logger != nil {
				env.Logger.Error("rotation has no evidence record in this store", "store", s.Name, "rotation", rr.ID, "err", err)
			}
			continue
		}
		res.Records[s.Name] = rec
	}
	if runErr != nil {
		return res, errors.Join(runErr, errors.Join(recErrs...))
	}
	if len(recErrs) > 0 {
		return res, fmt.Errorf("keys rotate %s: rotation done, but its evidence is not recorded everywhere: %w", policy, errors.Join(recErrs...))
	}
	return res, nil
}

// NewRunID returns a run's ID (docs/format.md §5.3.1):
// <name>-<UTC start as 20060102T150405Z>-<4 random hex digits>, like a
// backup ID, so that two runs started in the same second get different
// IDs. It is checked against the evidence ID rule: 1 to 128 bytes of
// [A-Za-z0-9._-].
func NewRunID(name string, started time.Time) (string, error) {
	var b [2]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("new run ID: %w", err)
	}
	id := name + "-" + started.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
	if err := evidence.ValidateID(id); err != nil {
		return "", fmt.Errorf("new run ID: %w", err)
	}
	return id, nil
}

// replicateKeyObjects copies the key objects a rotation wrote to the
// replicas of the plans using the key provider (docs/format.md §9.1), at
// once rather than at `serve`'s next pass, so that a replica is without a
// backup's newest wrap for as short a time as possible. Failures are
// logged: `serve` and `backup replicate` catch up, and `backup list`
// shows such a backup as `behind`.
func replicateKeyObjects(ctx context.Context, env *wire.Env, keyProvider string, o RotateOptions) {
	var plans []string
	for _, p := range env.Set.BackupPlans {
		if len(p.Spec.Replicas) > 0 && p.Spec.UsesKeyProvider(keyProvider) {
			plans = append(plans, p.Metadata.Name)
		}
	}
	if len(plans) == 0 || ctx.Err() != nil {
		return
	}
	for _, l := range CatchUp(ctx, env, ReplicateOptions{Signer: o.Signer, Now: o.Now, Plans: plans}) {
		if l.Err != nil && env.Logger != nil {
			env.Logger.Warn("replica not caught up after the rotation; serve or backup replicate will copy the new key objects", "plan", l.Plan, "store", l.Store, "err", l.Err)
		}
	}
}
