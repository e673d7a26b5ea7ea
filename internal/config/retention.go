package config

import (
	"fmt"
	"time"
)

// The retention rule, in one place (docs/format.md §1):
//
//   - every object of a backup is locked for BackupRetention: the plan's
//     retention (default 2190d), never shorter than the store's
//     objectLock.retention;
//   - evidence records and drill reports written to a store are locked
//     for EvidenceRetention: the store's objectLock.retention, never
//     shorter than DefaultRetention (2190d, HIPAA §164.316(b)(2)(i)),
//     whatever wrote them (a backup, a rotation, a drill, the scheduler).
//
// A store without objectLock gets the same rule with its lock retention
// taken as zero, so backup evidence and drill evidence in one store are
// kept equally long.

// BackupRetention is how long every object of plan's backups in store st
// is locked.
func BackupRetention(plan *BackupPlan, st *Store) time.Duration {
	r := plan.Spec.Retention.Default.Std()
	if r <= 0 {
		r = DefaultRetention.Std()
	}
	return max(r, storeLock(st))
}

// EvidenceRetention is how long evidence records and reports written to
// store st are locked.
func EvidenceRetention(st *Store) time.Duration {
	return max(DefaultRetention.Std(), storeLock(st))
}

func storeLock(st *Store) time.Duration {
	if st == nil || st.Spec.ObjectLock == nil {
		return 0
	}
	return st.Spec.ObjectLock.Retention.Std()
}

// Retention tiers (docs/format.md §1.2).
const (
	TierWeekly  = "weekly"
	TierMonthly = "monthly"
	TierYearly  = "yearly"
)

// Tiers returns the plan's retention tiers in use, shortest period first,
// each with its lock: never shorter than the store's lock.
func Tiers(plan *BackupPlan, st *Store) []Tier {
	var out []Tier
	r := plan.Spec.Retention
	for _, t := range []struct {
		name string
		d    Duration
	}{{TierWeekly, r.Weekly}, {TierMonthly, r.Monthly}, {TierYearly, r.Yearly}} {
		if t.d > 0 {
			out = append(out, Tier{Name: t.name, Lock: max(t.d.Std(), storeLock(st))})
		}
	}
	return out
}

// Tier is one retention tier of a plan.
type Tier struct {
	Name string
	Lock time.Duration
}

// Period returns the name of the period of tier that t falls in, in UTC:
// "2026-W49" (ISO week) for weekly, "2026-12" for monthly, "2026" for
// yearly.
func (t Tier) Period(at time.Time) string { return TierPeriod(t.Name, at) }

// TierPeriod returns the period of the named tier that at falls in (see
// Tier.Period); "" for an unknown tier.
func TierPeriod(tier string, at time.Time) string {
	at = at.UTC()
	switch tier {
	case TierWeekly:
		y, w := at.ISOWeek()
		return fmt.Sprintf("%04d-W%02d", y, w)
	case TierMonthly:
		return at.Format("2006-01")
	case TierYearly:
		return at.Format("2006")
	}
	return ""
}

// TierPeriodStart returns the start (UTC) of the period of the named tier
// that at falls in: Monday 00:00 of its ISO week, the first of its month,
// the first of its year; the zero time for an unknown tier.
func TierPeriodStart(tier string, at time.Time) time.Time {
	at = at.UTC()
	day := time.Date(at.Year(), at.Month(), at.Day(), 0, 0, 0, 0, time.UTC)
	switch tier {
	case TierWeekly:
		back := (int(day.Weekday()) + 6) % 7 // days since Monday
		return day.AddDate(0, 0, -back)
	case TierMonthly:
		return time.Date(at.Year(), at.Month(), 1, 0, 0, 0, 0, time.UTC)
	case TierYearly:
		return time.Date(at.Year(), 1, 1, 0, 0, 0, 0, time.UTC)
	}
	return time.Time{}
}
