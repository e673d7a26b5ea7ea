package job

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/backup"
	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/drill"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/scratch"
	"github.com/lifeboat-dr/lifeboat/internal/wire"
)

// DrillOptions configure Drill.
type DrillOptions struct {
	// Signer signs the report and the evidence record. Required.
	Signer *evidence.Signer
	// Start is when the drill (the simulated incident, the RTO clock)
	// started; the caller takes it first thing so its own setup counts.
	// Zero means now.
	Start time.Time
	// Keep leaves the scratch cluster serving; the result's Cluster must
	// then be stopped by the caller.
	Keep bool
	// TempDir, EtcdPrefix: see drill.Options.
	TempDir, EtcdPrefix string
	// KubeAPIServer is the embedded scratch provider's kube-apiserver
	// binary; empty: $LIFEBOAT_KUBE_APISERVER, else beside lifeboat.
	KubeAPIServer string
	// Scratch, when set, is the scratch provider to use instead of the
	// one the Drill's scratch section names.
	Scratch scratch.Provider
	// Progress, when set, is told what the drill is doing.
	Progress func(drill.Event)
	// KeyProvider, when set, unwraps with that KeyProvider alone (`drill
	// run --key-provider`, the break-glass drill); it overrides the
	// Drill's spec.keyProvider. Empty: the Drill's, else any of the
	// plan's keyProviders.
	KeyProvider string
	// Store, when set, is the Store the backup is read from: the plan's
	// store or one of its replicas (`drill run --store`, docs/format.md
	// §9). The report and record still go to the plan's store, and the
	// record names the store read (subject.fromStore).
	Store string
}

// DrillResult is what a drill run did.
type DrillResult struct {
	// Result is the drill's result; Result.Cluster is set when kept.
	Result drill.Result
	// Published is the stored report and evidence record; nil when none
	// was written (the drill never started, or an operator interrupted
	// it).
	Published *drill.Published
	// Store names the Store holding the report.
	Store string
	// ReadFrom names the Store the backup was read from.
	ReadFrom string
	// Interrupted is set when ctx ended during the drill: the scratch
	// cluster was torn down and no report was written (a drill an operator
	// stopped measured nothing).
	Interrupted bool
}

// Drill runs d: it opens the plan's store and key provider and the
// scratch provider, runs the drill (drill.Run), and publishes its signed
// report and evidence record, pass or fail. A failed drill returns an
// error wrapping drill.ErrFailed with the report published.
func Drill(ctx context.Context, env *wire.Env, d *config.Drill, o DrillOptions) (DrillResult, error) {
	var res DrillResult
	start := o.Start
	if start.IsZero() {
		start = time.Now()
	}
	if o.Signer == nil {
		return res, fmt.Errorf("drill run %s: no evidence signer", d.Metadata.Name)
	}
	plan, ok := env.Set.BackupPlan(d.Spec.BackupPlan)
	if !ok {
		return res, fmt.Errorf("drill run %s: %w", d.Metadata.Name, &NotFoundError{config.KindBackupPlan, d.Spec.BackupPlan})
	}
	cs, _ := env.Set.Store(plan.Spec.Store)
	res.Store = cs.Metadata.Name
	provider := o.Scratch
	if provider == nil {
		p, err := env.Scratch(d, o.KubeAPIServer)
		if err != nil {
			return res, fmt.Errorf("drill run: %w", err)
		}
		provider = p
	}
	st, err := env.OpenStore(ctx, cs, false)
	if err != nil {
		return res, fmt.Errorf("drill run %s: %w", d.Metadata.Name, err)
	}
	// src is where the backup, and the signed records vouching for it,
	// are read: the plan's store, or a replica of it.
	src, fromStore := st, ""
	if o.Store != "" && o.Store != cs.Metadata.Name {
		if !slices.Contains(plan.Spec.Replicas, o.Store) {
			return res, fmt.Errorf("drill run %s: store %q is neither backup plan %s's store (%s) nor one of its replicas", d.Metadata.Name, o.Store, plan.Metadata.Name, cs.Metadata.Name)
		}
		rcs, ok := env.Set.Store(o.Store)
		if !ok {
			return res, fmt.Errorf("drill run %s: %w", d.Metadata.Name, &NotFoundError{config.KindStore, o.Store})
		}
		if src, err = env.OpenStore(ctx, rcs, true); err != nil {
			return res, fmt.Errorf("drill run %s: %w", d.Metadata.Name, err)
		}
		fromStore = o.Store
	}
	res.ReadFrom = cmp.Or(fromStore, cs.Metadata.Name)
	only := cmp.Or(o.KeyProvider, d.Spec.KeyProvider)
	if only != "" && !plan.Spec.UsesKeyProvider(only) {
		return res, fmt.Errorf("drill run %s: backup plan %s does not wrap its backups under key provider %q (it uses %s)", d.Metadata.Name, plan.Metadata.Name, only, strings.Join(plan.Spec.KeyProviderNames(), ", "))
	}
	pk, err := env.ReadKeys(ctx, plan, only)
	if err != nil {
		return res, fmt.Errorf("drill run %s: %w", d.Metadata.Name, err)
	}
	r, runErr := drill.Run(ctx, drill.Options{
		Drill: d, Plan: plan, Store: src, Keys: pk, KeyProviders: pk.Names, Scratch: provider,
		Keep: o.Keep, TempDir: o.TempDir, EtcdPrefix: o.EtcdPrefix, Logger: env.Logger,
		Start: start, Progress: o.Progress,
		GapPoints: func(ctx context.Context, plan string, from, to time.Time) ([]time.Time, error) {
			return SignedBackupPoints(ctx, evidence.NewLog(src, o.Signer, nil), plan, from, to)
		},
		CheckManifest: func(ctx context.Context, id, sum string) error {
			// The drill's own signing key vouched for the backups it
			// records; a backup whose record is missing or predates the
			// digest is drilled with a warning, a replaced manifest not.
			rc, err := backup.CheckRecord(ctx, src, id, sum, o.Signer.PublicKey())
			if err != nil {
				return err
			}
			switch rc.Status {
			case backup.RecordMissing:
				// Its point in time would be the drill's RPO: a backup no
				// signed record speaks for is not drilled (anyone who can
				// write the store can plant one).
				return fmt.Errorf("backup %s: no signed evidence record of it under evidence/ (signer %s): %w", id, o.Signer.KeyID(), catalog.ErrVerification)
			case backup.RecordNoDigest:
				if env.Logger != nil {
					env.Logger.Warn("the backup's record predates manifest digests; its manifest is checked by its MAC only", "backup", id, "record", rc.Record)
				}
			}
			return nil
		},
	})
	res.Result = r
	if r.RunID == "" {
		return res, runErr // the drill never started: bad options
	}
	if ctx.Err() != nil {
		stopKept(env, &res.Result)
		res.Interrupted = true
		if runErr == nil {
			runErr = ctx.Err()
		}
		return res, runErr
	}
	// The scheduled backups that did not deliver explain the worst gap.
	misses, merr := drill.ScheduleMisses(ctx, evidence.NewLog(src, o.Signer, nil), plan.Metadata.Name, r.Incident, drill.GapWindow)
	if merr != nil && env.Logger != nil {
		env.Logger.Warn("scheduled backups that did not deliver not counted", "drill", d.Metadata.Name, "err", merr)
	}
	r.ScheduleMisses = misses
	if len(misses) > 0 && env.Logger != nil {
		env.Logger.Info("scheduled backups that did not deliver in the gap window", "drill", d.Metadata.Name, "plan", plan.Metadata.Name, "count", len(misses))
	}
	res.Result.ScheduleMisses = misses
	// The report shows this Drill's earlier runs, from records this
	// drill's own key signed.
	runs, terr := ListReports(ctx, st, ReportFilter{Drill: d.Metadata.Name}, []evidence.PublicKey{o.Signer.PublicKey()})
	if terr != nil && env.Logger != nil {
		env.Logger.Warn("earlier runs of the drill not read for the report's trend", "drill", d.Metadata.Name, "err", terr)
	}
	r.Trend = TrendOf(runs, evidence.MaxTrend)
	res.Result.Trend = r.Trend
	pub, perr := drill.Publish(ctx, r, drill.PublishOptions{Store: st, Signer: o.Signer, Retention: config.EvidenceRetention(cs), Logger: env.Logger, FromStore: fromStore})
	if perr != nil {
		stopKept(env, &res.Result)
		return res, errors.Join(perr, runErr)
	}
	res.Published = &pub
	return res, runErr
}

// stopKept tears down a kept scratch cluster.
func stopKept(env *wire.Env, r *drill.Result) {
	if r.Cluster == nil {
		return
	}
	if err := r.Cluster.Stop(); err != nil && env.Logger != nil {
		env.Logger.Warn("stop scratch cluster", "err", err)
	}
	r.Cluster = nil
}

// SignedBackupPoints returns the points in time (the etcd snapshot's
// takenAt, else the start) of plan's complete backups, from their signed
// `backup` records appended between from and to, read backwards from the
// head of the log: manifests planted in the store by someone else have no
// such record and cannot shorten the worst gap a drill reports.
func SignedBackupPoints(ctx context.Context, log interface {
	Backwards(ctx context.Context, limit int, fn func(evidence.Record) bool) error
}, plan string, from, to time.Time) ([]time.Time, error) {
	var points []time.Time
	err := log.Backwards(ctx, 1<<20, func(r evidence.Record) bool {
		if r.Time.Before(from) {
			return false
		}
		if r.Kind != evidence.KindBackup || r.Outcome != evidence.OutcomeSuccess || r.Subject["plan"] != plan || r.Subject["status"] != catalog.StatusComplete {
			return true
		}
		at := ""
		if e, ok := r.Subject["etcd"].(map[string]any); ok {
			at, _ = e["takenAt"].(string)
		}
		if at == "" {
			at, _ = r.Subject["started"].(string)
		}
		t, err := time.Parse(time.RFC3339Nano, at)
		if err == nil && !t.After(to) {
			points = append(points, t)
		}
		return true
	})
	return points, err
}
