package service

import (
	"context"
	"errors"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/backup"
	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/drill"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/job"
	"github.com/lifeboat-dr/lifeboat/internal/rotation"
	"github.com/lifeboat-dr/lifeboat/internal/wire"
)

// Runner runs one scheduled job. JobRunner, the default, calls package
// job: the same code path as the command line.
type Runner interface {
	Run(ctx context.Context, env *wire.Env, t Target) RunResult
}

// RunResult is what a scheduled run did.
type RunResult struct {
	// ID is the run's ID (backup ID, rotation run ID, drill run ID); ""
	// when the run failed before it had one.
	ID string
	// Outcome is success, partial or failure.
	Outcome string
	// Record is the key of the run's own evidence record; "" when none.
	Record string
	// ReportKey is a drill's signed report.json; "" when none.
	ReportKey string
	// Reason says, without quoting configuration or secrets, why the run
	// did not succeed.
	Reason string
	// Backup, Rotation and Drill carry what the metrics and the status
	// page show; each is set only for its kind.
	Backup   *catalog.Manifest
	Rotation *rotation.RunRecord
	Drill    *drill.Result
}

// JobRunner runs backups, rotations and drills with package job.
type JobRunner struct {
	// Signer signs every record. Required.
	Signer *evidence.Signer
	// Version is recorded in backup manifests.
	Version string
	// KubeAPIServer is the embedded scratch provider's binary, if set.
	KubeAPIServer string
	// TempDir is where drills keep their private temporary files.
	TempDir string
}

// Run implements Runner.
func (r JobRunner) Run(ctx context.Context, env *wire.Env, t Target) RunResult {
	switch t.Kind {
	case config.KindBackupPlan:
		res, err := job.Backup(ctx, env, t.Name, job.BackupOptions{Signer: r.Signer, Version: r.Version})
		out := RunResult{ID: res.Manifest.Backup, Record: res.Record.Key(), Outcome: evidence.OutcomeSuccess}
		if res.Record.Seq == 0 {
			out.Record = ""
		}
		if res.Manifest.Backup != "" {
			m := res.Manifest
			out.Backup = &m
			if m.Status == catalog.StatusPartial {
				out.Outcome, out.Reason = evidence.OutcomePartial, "some sources were skipped (see the backup's record)"
			}
		}
		if err != nil {
			out.Outcome, out.Reason = evidence.OutcomeFailure, failReason(ctx, err, "backup")
			if re := (*backup.RunError)(nil); errors.As(err, &re) {
				out.ID = re.Backup
				out.Reason = "backup failed at step " + re.Step
			}
			if res.Record.Seq != 0 {
				out.ID = res.Record.ID
			}
		}
		return out
	case config.KindRotationPolicy:
		res, err := job.Rotate(ctx, env, t.Name, job.RotateOptions{Signer: r.Signer})
		out := RunResult{Outcome: evidence.OutcomeSuccess, Rotation: res.Run}
		if res.Run != nil {
			out.ID = res.Run.ID
			if len(res.Run.Stores) > 0 {
				out.Outcome = res.Run.Outcome(res.Run.Stores[0])
				if rec, ok := res.Records[res.Run.Stores[0]]; ok {
					out.Record = rec.Key()
				}
			}
		}
		if err != nil {
			if out.Outcome == evidence.OutcomeSuccess {
				out.Outcome = evidence.OutcomeFailure
			}
			out.Reason = failReason(ctx, err, "rotation")
			if errors.Is(err, rotation.ErrIncomplete) {
				out.Reason = "some backups were not rewrapped (see the rotation record)"
			}
		}
		return out
	case config.KindDrill:
		d, ok := env.Set.Drill(t.Name)
		if !ok {
			return RunResult{Outcome: evidence.OutcomeFailure, Reason: "no Drill named " + t.Name}
		}
		res, err := job.Drill(ctx, env, d, job.DrillOptions{Signer: r.Signer, Start: time.Now(), KubeAPIServer: r.KubeAPIServer, TempDir: r.TempDir})
		out := RunResult{ID: res.Result.RunID, Outcome: evidence.OutcomeSuccess}
		dr := res.Result
		dr.Cluster = nil
		out.Drill = &dr
		if res.Published != nil {
			out.Record = res.Published.Record.Key()
			out.ReportKey = res.Published.Objects.JSON.Key
		}
		if err != nil || res.Result.Verdict != evidence.VerdictPass {
			out.Outcome = evidence.OutcomeFailure
			out.Reason = failReason(ctx, err, "drill")
			if errors.Is(err, drill.ErrFailed) || (err == nil && res.Published != nil) {
				out.Reason = "the drill failed its targets or checks (see the report)"
			}
		}
		return out
	}
	return RunResult{Outcome: evidence.OutcomeFailure, Reason: "unknown target kind " + t.Kind}
}

// failReason is a short reason for a failed run that quotes no error text
// (which may hold configuration): the run's own record has the details.
func failReason(ctx context.Context, err error, what string) string {
	switch {
	case ctx.Err() != nil:
		return what + " interrupted (lease lost or shutting down)"
	case errors.Is(err, job.ErrStoreRefused):
		return "the store's lock status was refused"
	case err == nil:
		return what + " failed"
	}
	return what + " failed (see the service log and the run's record)"
}
