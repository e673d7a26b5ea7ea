package drill

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/evidence"
)

// ScheduleMiss is a scheduled backup of the drilled plan that did not
// deliver a backup in the gap window: a tick `lifeboat serve` missed or
// abandoned, or a run that failed (docs/format.md §7.3).
type ScheduleMiss struct {
	Schedule string    `json:"schedule"`
	Tick     time.Time `json:"tick"`
	// Status is "missed", "abandoned" or "ran" (a run that failed).
	Status string `json:"status"`
	Reason string `json:"reason"`
}

// BackwardsReader reads an evidence log newest first (evidence.Log).
type BackwardsReader interface {
	Backwards(ctx context.Context, limit int, fn func(evidence.Record) bool) error
}

// maxScheduleScan bounds how many evidence records ScheduleMisses reads.
const maxScheduleScan = 50000

// ScheduleMisses returns, oldest first, the signed `schedule` records of
// ticks targeting plan in the window before incident that did not succeed:
// why the worst gap between backups is what it is. It reads the log
// backwards and stops at the first record appended before the window.
func ScheduleMisses(ctx context.Context, log BackwardsReader, plan string, incident time.Time, window time.Duration) ([]ScheduleMiss, error) {
	from := incident.Add(-window)
	var out []ScheduleMiss
	err := log.Backwards(ctx, maxScheduleScan, func(r evidence.Record) bool {
		if r.Time.Before(from) {
			return false
		}
		if r.Kind != evidence.KindSchedule || r.Outcome == evidence.OutcomeSuccess {
			return true
		}
		if r.Subject["targetKind"] != "BackupPlan" || r.Subject["targetName"] != plan {
			return true
		}
		tick, err := time.Parse(time.RFC3339, fmt.Sprint(r.Subject["tick"]))
		if err != nil || tick.Before(from) || tick.After(incident) {
			return true
		}
		m := ScheduleMiss{Tick: tick.UTC()}
		m.Schedule, _ = r.Subject["schedule"].(string)
		m.Status, _ = r.Subject["status"].(string)
		m.Reason, _ = r.Subject["reason"].(string)
		out = append(out, m)
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("schedule misses of plan %s: %w", plan, err)
	}
	slices.SortFunc(out, func(a, b ScheduleMiss) int { return a.Tick.Compare(b.Tick) })
	return out, nil
}
