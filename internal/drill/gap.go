package drill

import (
	"slices"
	"time"
)

// GapWindow is how far back from the incident the worst gap between
// backups is measured: 30 days, long enough to cover a monthly drill's
// whole period.
const GapWindow = 30 * 24 * time.Hour

// WorstGap returns the RPO a schedule really delivered over the window
// [incident-window, incident]: the longest time, within the window, during
// which the newest restorable backup was older than the moment. points are
// the points in time of the plan's complete backups, in any order; points
// after the incident are ignored.
//
// Each interval runs from one backup to the next, and the last from the
// newest backup to the incident. An interval that began before the window
// counts only from the window's start; the time before the plan's first
// backup is not a gap (there was nothing to back up from lifeboat's point
// of view). ok is false when no backup is at or before the incident.
func WorstGap(points []time.Time, incident time.Time, window time.Duration) (gap time.Duration, ok bool) {
	ps := make([]time.Time, 0, len(points))
	for _, p := range points {
		if !p.After(incident) {
			ps = append(ps, p)
		}
	}
	if len(ps) == 0 {
		return 0, false
	}
	slices.SortFunc(ps, func(a, b time.Time) int { return a.Compare(b) })
	start := incident.Add(-window)
	ps = append(ps, incident)
	for i := 1; i < len(ps); i++ {
		from, to := ps[i-1], ps[i]
		if !to.After(start) {
			continue
		}
		if from.Before(start) {
			from = start
		}
		gap = max(gap, to.Sub(from))
	}
	return gap, true
}
