package service

import (
	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/drill"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/server"
)

// observe turns what a finished run did into metrics: a committed backup's
// stored bytes per source, etcd revision and point in time; a drill's RTO,
// RPO, worst gap and targets met; a rotation's rewrap failures.
func observe(m *server.Metrics, res RunResult) {
	if b := res.Backup; b != nil && res.Outcome != evidence.OutcomeFailure {
		bySource, rev := backupFacts(b)
		m.BackupCommitted(b.Plan, bySource, rev, b.PointInTime())
	}
	if d := res.Drill; d != nil && d.RunID != "" {
		m.DrillFinished(d.Drill, d.Measured.RTOMs, d.Measured.RPOMs, d.Measured.WorstGapMs, drillMet(d))
	}
	if r := res.Rotation; r != nil {
		m.RewrapFailures(r.KeyProvider, r.Totals().Failed)
	}
}

// backupFacts sums a manifest's stored bytes by source and returns its
// etcd revision (0 without an etcd source).
func backupFacts(b *catalog.Manifest) (map[string]int64, int64) {
	bySource := map[string]int64{}
	for _, a := range b.Artifacts {
		bySource[a.Source] += a.CiphertextSize
	}
	var rev int64
	if b.Etcd != nil {
		rev = b.Etcd.Revision
	}
	return bySource, rev
}

// drillMet says, per target, whether a drill's run met it: "rto" and "rpo"
// when measured within the target, "checks" when at least one ran and every
// one passed (the rule of evidence.Judge, target by target).
func drillMet(d *drill.Result) map[string]bool {
	within := func(got *int64, target int64) bool { return got != nil && *got <= target }
	checks := len(d.Checks) > 0
	for _, c := range d.Checks {
		if c.Outcome != evidence.CheckPass {
			checks = false
		}
	}
	return map[string]bool{
		"rto":    within(d.Measured.RTOMs, d.Targets.RTOMs),
		"rpo":    within(d.Measured.RPOMs, d.Targets.RPOMs),
		"checks": checks,
	}
}
