package job

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/backup"
	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/envelope"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/store"
	"github.com/lifeboat-dr/lifeboat/internal/wire"
)

// BackupOptions configure Backup.
type BackupOptions struct {
	// Signer signs the evidence record. Required.
	Signer *evidence.Signer
	// Version is the lifeboat version recorded in the manifest.
	Version string
	// Progress, when set, is told how far each artifact has got.
	Progress func(backup.Progress)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// BackupResult is what a backup run did.
type BackupResult struct {
	// Plan and Store name the configuration objects.
	Plan, Store string
	// Manifest is the committed backup's manifest (zero when the run
	// failed before committing).
	Manifest catalog.Manifest
	// Record is the evidence record appended (success, partial or
	// failure); zero when none could be written.
	Record evidence.Record
	// Warnings are the store's lock warnings and the skipped sources.
	Warnings []string
	// Tiers are the retention tiers whose lock the backup took, as
	// "<tier>/<period>" (docs/format.md §1.2); empty when it took the
	// plan's default lock.
	Tiers []string `json:"tiers,omitempty"`
	// Replicas are the copies to the plan's replica stores made right
	// after the backup committed (docs/format.md §9). A failed copy does
	// not fail the backup: it is recorded, warned about, and `serve` or
	// `backup replicate` catches up.
	Replicas []ReplicaResult `json:"replicas,omitempty"`
}

// Backup runs the BackupPlan called plan: it checks the plan's store
// (store.JudgeLock), takes the backup (backup.Run) and appends its
// evidence record. A run that fails after the store was accepted appends a
// failure record naming the step; the returned error is the run's own. A
// backup that committed but whose record could not be written returns an
// error saying so, with Manifest set.
func Backup(ctx context.Context, env *wire.Env, plan string, o BackupOptions) (BackupResult, error) {
	res := BackupResult{Plan: plan}
	p, ok := env.Set.BackupPlan(plan)
	if !ok {
		return res, fmt.Errorf("backup run: %w", &NotFoundError{config.KindBackupPlan, plan})
	}
	if o.Signer == nil {
		return res, fmt.Errorf("backup run %s: no evidence signer", plan)
	}
	now := o.Now
	if now == nil {
		now = time.Now
	}
	cs, _ := env.Set.Store(p.Spec.Store)
	res.Store = cs.Metadata.Name
	st, err := env.OpenStore(ctx, cs, false)
	if err != nil {
		return res, fmt.Errorf("backup run %s: %w", plan, err)
	}
	chk, err := env.CheckStore(ctx, cs)
	if err != nil {
		return res, fmt.Errorf("backup run %s: %w", plan, err)
	}
	if !chk.Verdict.OK {
		// Nothing is written to a refused store, not even evidence.
		return res, fmt.Errorf("backup run %s: %w: %s: %s (see `lifeboat store check %s`)",
			plan, ErrStoreRefused, cs.Metadata.Name, strings.Join(chk.Verdict.Problems, "; "), cs.Metadata.Name)
	}
	res.Warnings = append(res.Warnings, chk.Verdict.Problems...)
	log := env.Logger
	if log != nil {
		for _, w := range chk.Verdict.Problems {
			log.Warn("store warning", "store", cs.Metadata.Name, "problem", w)
		}
	}
	evRetention := config.EvidenceRetention(cs)
	failed := func(step string, err error) (BackupResult, error) {
		res.Record = recordBackupFailure(ctx, env, st, o.Signer, evRetention, plan, step, err, now)
		return res, err
	}
	// What an earlier, killed run left open is aborted first (and
	// recorded); a failure to clean up does not stop this backup.
	if n, err := CleanStaleUploads(ctx, st, cs.Metadata.Name, o.Signer, evRetention, now, log); err != nil && log != nil {
		log.Warn("stale uploads not cleaned up", "store", cs.Metadata.Name, "err", err)
	} else if n > 0 && log != nil {
		log.Warn("aborted uploads a killed run left open", "store", cs.Metadata.Name, "count", n)
	}
	// Every key provider the plan lists must wrap: a backup is promised
	// to be readable through each of them.
	pk, err := env.OpenPlanKeys(ctx, p.Spec.KeyProviderNames(), true)
	if err != nil {
		return failed("keyProvider", fmt.Errorf("backup run %s: %w", plan, err))
	}
	also := make([]envelope.Wrapper, 0, len(pk.Providers)-1)
	for _, kp := range pk.Providers[1:] {
		also = append(also, kp)
	}
	tiers := decideTiers(ctx, st, o.Signer, p, cs, now(), log)
	res.Tiers = tiers.names()
	m, err := backup.Run(ctx, backup.Options{
		Plan: p, Store: st, Keys: pk.Primary(), AlsoWrap: also, Retention: tiers.retention,
		Version: o.Version, Logger: env.Logger, Progress: o.Progress, Now: o.Now,
		// A vault source without tokenFile or address uses these; the
		// library reads no environment.
		VaultToken: getenv(env, "VAULT_TOKEN"), VaultAddr: getenv(env, "VAULT_ADDR"),
	})
	if err != nil {
		step := "backup"
		if re := (*backup.RunError)(nil); errors.As(err, &re) {
			step = re.Step
		}
		return failed(step, err)
	}
	res.Manifest = m
	if m.Status == catalog.StatusPartial {
		for _, s := range m.Skipped {
			res.Warnings = append(res.Warnings, fmt.Sprintf("source %s skipped: %s", s.Source, s.Reason))
		}
	}
	rctx, cancel := detached(ctx)
	defer cancel()
	rec, err := backup.Publish(rctx, m, backup.PublishOptions{Store: st, Signer: o.Signer, Retention: evRetention, Tiers: res.Tiers, Logger: env.Logger})
	if err != nil {
		return res, fmt.Errorf("backup run %s: backup %s is committed, but its evidence record is not: %w", plan, m.Backup, err)
	}
	res.Record = rec
	claimTiers(rctx, st, cs.Metadata.Name, o.Signer, m, tiers, evRetention, now(), log)
	if len(p.Spec.Replicas) > 0 {
		reps, err := replicateAll(ctx, env, p, cs, st, m.Backup, p.Spec.Replicas, ReplicateOptions{Signer: o.Signer, Now: o.Now})
		res.Replicas = reps
		if err != nil {
			res.Warnings = append(res.Warnings, fmt.Sprintf("backup %s is committed, but not every replica has it yet (`lifeboat backup replicate %s`, or serve, catches up): %v", m.Backup, m.Backup, err))
			if log != nil {
				log.Warn("replication failed; the backup is committed", "backup", m.Backup, "err", err)
			}
		}
	}
	return res, nil
}

func getenv(env *wire.Env, k string) string {
	if env.Getenv == nil {
		return ""
	}
	return env.Getenv(k)
}

// recordBackupFailure appends a failure record (kind backup) for a run of
// plan that failed at step. The record's ID is the backup ID when the run
// assigned one, else <plan>-<UTC time>. Its subject holds the plan, backup
// ID, step and time, never the error's text (which may quote
// configuration). A failure to record is logged and returns the zero
// record: the caller returns the run's own error.
func recordBackupFailure(ctx context.Context, env *wire.Env, st store.Store, signer *evidence.Signer, retention time.Duration, plan, step string, runErr error, now func() time.Time) evidence.Record {
	t := now().UTC()
	id := plan + "-" + t.Format("20060102T150405Z")
	subject := map[string]any{"plan": plan, "step": step, "time": t.Format(time.RFC3339Nano)}
	if re := (*backup.RunError)(nil); errors.As(runErr, &re) && re.Backup != "" {
		id = re.Backup
		subject["backup"] = re.Backup
	}
	rctx, cancel := detached(ctx)
	defer cancel()
	opts := []evidence.Option{evidence.WithRetention(retention)}
	if env.Logger != nil {
		opts = append(opts, evidence.WithLogger(env.Logger))
	}
	rec, err := evidence.NewLog(st, signer, nil, opts...).Append(rctx, evidence.Record{
		Kind: evidence.KindBackup, ID: id, Outcome: evidence.OutcomeFailure, Subject: subject, HIPAA: []string{},
	})
	if err != nil {
		if env.Logger != nil {
			env.Logger.Error("the failed backup run has no evidence record", "plan", plan, "err", err)
		}
		return evidence.Record{}
	}
	return rec
}
