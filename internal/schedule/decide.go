package schedule

import (
	"crypto/sha256"
	"encoding/binary"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/lifeboat-dr/lifeboat/internal/config"
)

// MaxListed is the most missed ticks a Decision lists one by one; more are
// counted in one Miss.
const MaxListed = 100

// Reason says why a tick did not run. The values are written into signed
// evidence records and never change.
type Reason string

// Reasons a tick did not run.
const (
	// ReasonSuperseded: a newer tick was also due, and only the most
	// recent due tick runs.
	ReasonSuperseded Reason = "superseded"
	// ReasonDeadline: the tick's start is more than startingDeadline ago.
	ReasonDeadline Reason = "starting-deadline-exceeded"
	// ReasonForbid: a run of the schedule was in progress and the
	// concurrency policy is Forbid.
	ReasonForbid Reason = "concurrency-forbid"
	// ReasonSuspended: the tick came due while the schedule was suspended.
	ReasonSuspended Reason = "suspended"
	// ReasonSkipImmediately: the tick came due before the schedule was
	// un-suspended (State.Since), and skipImmediately is set.
	ReasonSkipImmediately Reason = "skip-immediately"
	// ReasonTooMany: more than MaxListed ticks were due at once; none ran.
	ReasonTooMany Reason = "too-many-missed"
	// ReasonRestored: the tick came due before the cluster was restored
	// from a backup (State.RestoredAt): it backs up a cluster that no
	// longer exists, so it does not run; a backup of the restored cluster
	// runs at once instead.
	ReasonRestored Reason = "restored"
)

// Known reports whether r is one of the reasons above: a claim or an
// outcome read from a store with any other was not written by lifeboat.
func (r Reason) Known() bool {
	switch r {
	case ReasonSuperseded, ReasonDeadline, ReasonForbid, ReasonSuspended, ReasonSkipImmediately, ReasonTooMany, ReasonRestored:
		return true
	}
	return false
}

// Spec is what Decide needs of one Schedule.
type Spec struct {
	// Name is the schedule's name.
	Name string
	// Cron is the cron schedule bound to its time zone
	// (config.Schedule.CronSchedule).
	Cron cron.Schedule
	// StartingDeadline is how late after its start a tick may still run;
	// zero means no deadline.
	StartingDeadline time.Duration
	// Suspend records every due tick as missed instead of running it.
	Suspend bool
	// SkipImmediately never runs a tick due at or before State.Since.
	SkipImmediately bool
	// Jitter bounds the start delay: Offset is in [0, Jitter).
	Jitter time.Duration
	// JitterSeed sets Offset apart per cluster, such as the store prefix.
	JitterSeed string
	// Concurrency is Forbid (also when empty or unknown), Allow or Replace.
	Concurrency config.ConcurrencyPolicy
}

// NewSpec returns the Spec of a loaded schedule, with jitterSeed telling
// this cluster's start delay apart from other clusters'.
func NewSpec(o *config.Schedule, jitterSeed string) (Spec, error) {
	c, err := o.CronSchedule()
	if err != nil {
		return Spec{}, err
	}
	return Spec{
		Name:             o.Metadata.Name,
		Cron:             c,
		StartingDeadline: o.Spec.StartingDeadline.Std(),
		Suspend:          o.Spec.Suspend,
		SkipImmediately:  o.Spec.SkipImmediately,
		Jitter:           o.Spec.Jitter.Std(),
		JitterSeed:       jitterSeed,
		Concurrency:      o.Spec.ConcurrencyPolicy,
	}, nil
}

// State is what the loop remembers of one schedule, rebuilt from the
// evidence log on start.
type State struct {
	// LastTick is the newest tick already decided (run, or recorded as
	// missed); zero when none was.
	LastTick time.Time
	// Since is the moment the schedule was first loaded (no history) or
	// last un-suspended. With LastTick zero, ticks at or before it are
	// never considered; with SkipImmediately, ticks at or before it never
	// run. Zero, together with a zero LastTick, means "now".
	Since time.Time
	// Running is how many runs of the schedule are in progress.
	Running int
	// RestoredAt, for a backup schedule, is when its plan's cluster was
	// last restored from a backup (the signed restore record's time, whole
	// seconds); zero when never, or when a tick after it was decided.
	// While it is after LastTick, due ticks at or before it are missed
	// with ReasonRestored and, unless a later tick is due, RestoredAt
	// itself runs at once as a tick: the restored cluster's etcd has a
	// new cluster ID and revisions, and its first backup should not wait
	// for the next cron tick.
	RestoredAt time.Time
}

// Miss is one tick, or with Count > 1 several ticks, that will never run.
type Miss struct {
	// Tick is the nominal tick; with Count > 1 the most recent of them.
	Tick time.Time
	// Reason says why it did not run.
	Reason Reason
	// Count is how many ticks the Miss stands for: 1, or more than
	// MaxListed when they were too many to list.
	Count int
}

// Decision is what the loop does now.
type Decision struct {
	// Run is the nominal tick to run now; zero when nothing runs.
	Run time.Time
	// Replace asks the loop to cancel the runs in progress before it
	// starts Run (concurrency policy Replace).
	Replace bool
	// Missed are the ticks that will never run, oldest first.
	Missed []Miss
	// LastTick is the newest tick this decision settles (Run or Missed),
	// or State.LastTick when it settles none: the State.LastTick of the
	// next decision, once the loop has recorded this one.
	LastTick time.Time
	// Next is the first tick not yet due; zero when the cron expression
	// never fires again.
	Next time.Time
	// NextStart is Next plus Offset: when the loop should decide again.
	NextStart time.Time
}

// ticks accumulates due ticks: every one up to MaxListed, then only their
// number and the most recent.
type ticks struct {
	list []time.Time
	n    int
	last time.Time
}

func (g *ticks) add(t time.Time) {
	if g.n < MaxListed {
		g.list = append(g.list, t)
	}
	g.n++
	g.last = t
}

// misses returns g's ticks as misses for reason: one each, or one
// counting them all when there are more than MaxListed.
func (g *ticks) misses(reason Reason) []Miss {
	if g.n > MaxListed {
		return []Miss{{Tick: g.last, Reason: reason, Count: g.n}}
	}
	m := make([]Miss, len(g.list))
	for i, t := range g.list {
		m[i] = Miss{Tick: t, Reason: reason, Count: 1}
	}
	return m
}

// Decide decides what schedule s does at now, given what the loop
// remembers. See the package documentation for the rules.
func Decide(s Spec, st State, now time.Time) Decision {
	off := Offset(s)
	due := now.Add(-off) // a tick t is due when t+off is not after now
	from := st.LastTick
	if from.IsZero() {
		from = st.Since
	}
	if from.IsZero() {
		from = now
	}

	restore := !st.RestoredAt.IsZero() && st.RestoredAt.After(st.LastTick) && !st.RestoredAt.After(now)
	var before, restored, after ticks // before: at or before Since with SkipImmediately
	t := next(s.Cron, from)
	for ; !t.IsZero() && !t.After(due); t = next(s.Cron, t) {
		switch {
		case s.SkipImmediately && !t.After(st.Since):
			before.add(t)
		case restore && !t.After(st.RestoredAt):
			restored.add(t)
		default:
			after.add(t)
		}
	}
	d := Decision{LastTick: st.LastTick, Next: t}
	if !t.IsZero() {
		d.NextStart = t.Add(off)
	}
	switch {
	case after.n > 0:
		d.LastTick = after.last
	case restore && !s.Suspend:
		// The restore itself is decided, run or missed, by this decision.
		d.LastTick = st.RestoredAt
	case restored.n > 0:
		d.LastTick = restored.last
	case before.n > 0:
		d.LastTick = before.last
	}

	if s.Suspend {
		d.Missed = append(append(before.misses(ReasonSuspended), restored.misses(ReasonSuspended)...), after.misses(ReasonSuspended)...)
		return d
	}
	d.Missed = append(before.misses(ReasonSkipImmediately), restored.misses(ReasonRestored)...)
	if after.n == 0 && restore {
		// No tick after the restore is due yet: the restore runs as one,
		// at once, whatever the starting deadline (serve may come back
		// long after `restore apply`).
		after.add(st.RestoredAt)
	}
	if after.n == 0 {
		return d
	}
	if after.n > MaxListed {
		d.Missed = append(d.Missed, after.misses(ReasonTooMany)...)
		return d
	}
	late := func(t time.Time) bool {
		// After a restore the newest due tick runs whatever its lateness:
		// the restored cluster's first backup must not wait.
		if restore && t.Equal(after.last) {
			return false
		}
		return s.StartingDeadline > 0 && now.Sub(t.Add(off)) > s.StartingDeadline
	}
	for _, t := range after.list[:after.n-1] {
		r := ReasonSuperseded
		if late(t) {
			r = ReasonDeadline
		}
		d.Missed = append(d.Missed, Miss{Tick: t, Reason: r, Count: 1})
	}
	switch last := after.last; {
	case late(last):
		d.Missed = append(d.Missed, Miss{Tick: last, Reason: ReasonDeadline, Count: 1})
	case st.Running == 0 || s.Concurrency == config.ConcurrencyAllow:
		d.Run = last
	case s.Concurrency == config.ConcurrencyReplace:
		d.Run, d.Replace = last, true
	default:
		d.Missed = append(d.Missed, Miss{Tick: last, Reason: ReasonForbid, Count: 1})
	}
	return d
}

// Offset is the delay of every start of s after its tick: a value in
// [0, s.Jitter) fixed by s.Name and s.JitterSeed (the first 8 bytes of
// SHA-256(Name + "\x00" + JitterSeed), big-endian, modulo Jitter), so that
// every replica and restart agrees on it. Zero when s.Jitter is not
// positive.
func Offset(s Spec) time.Duration {
	if s.Jitter <= 0 {
		return 0
	}
	h := sha256.Sum256([]byte(s.Name + "\x00" + s.JitterSeed))
	return time.Duration(binary.BigEndian.Uint64(h[:8]) % uint64(s.Jitter))
}

// everyHour is the bits of cron.SpecSchedule.Hour for hours 0 to 23.
const everyHour = 1<<24 - 1

// next returns the first tick of c after t, leaving out the second
// occurrence of a wall-clock time repeated when clocks fall back, unless
// the expression fires in every hour (see the package documentation).
func next(c cron.Schedule, t time.Time) time.Time {
	for {
		t = c.Next(t)
		if t.IsZero() || !repeated(c, t) {
			return t
		}
	}
}

// repeated reports whether t is a tick of a cron expression with fixed
// hours whose local wall-clock time already passed once, before the
// clocks went back.
func repeated(c cron.Schedule, t time.Time) bool {
	spec, ok := c.(*cron.SpecSchedule)
	if !ok || spec.Location == nil || spec.Hour&everyHour == everyHour {
		return false
	}
	local := t.In(spec.Location)
	start, _ := local.ZoneBounds()
	if start.IsZero() {
		return false
	}
	_, now := local.Zone()
	_, before := start.Add(-time.Second).Zone()
	back := time.Duration(before-now) * time.Second // how far the clocks went back
	return back > 0 && local.Sub(start) < back
}
